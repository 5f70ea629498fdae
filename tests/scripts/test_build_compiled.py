"""The compiled build's tree keeping (scripts/build_compiled.py), without compiling.

What matters is that the tree never serves stale code: every ``.py`` matches
``src/``, a module gone from ``src/`` is gone from the tree, and an extension
of a module no longer compiled stops shadowing its copy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_compiled.py"
SO = ".cpython-311-x86_64-linux-gnu.so"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_compiled", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copy_mirrors_src_and_drops_stale_files(tmp_path: Path) -> None:
    build = load_script()
    package = tmp_path / "syndic"
    (package / "raft").mkdir(parents=True)
    stale_py = package / "raft" / "gone.py"
    stale_py.write_text("raise ImportError\n")
    edited = package / "kv" / "mvcc.py"
    edited.parent.mkdir()
    edited.write_text("# an older copy\n")
    compiled_so = package / "kv" / ("mvcc" + SO)
    compiled_so.write_bytes(b"kept: mvcc is compiled")
    dropped_so = package / "raft" / ("core" + SO)  # core is not in COMPILED_MODULES
    dropped_so.write_bytes(b"must go")
    old_runtime = tmp_path / ("0123456789abcdef0123__mypyc" + SO)
    old_runtime.write_bytes(b"must go")

    build.copy_sources(tmp_path)

    source = ROOT / "src" / "syndic"
    assert edited.read_bytes() == (source / "kv" / "mvcc.py").read_bytes()
    assert (package / "raft" / "core.py").read_bytes() == (source / "raft" / "core.py").read_bytes()
    assert not stale_py.exists()
    assert compiled_so.exists()
    assert not dropped_so.exists()
    assert not old_runtime.exists()
    assert "syndic/raft/core.py" not in build.COMPILED_MODULES


def test_every_compiled_module_exists_and_is_not_an_exception_module() -> None:
    build = load_script()
    for module in build.COMPILED_MODULES:
        assert (ROOT / "src" / module).is_file(), module
        assert not module.endswith(("errors.py", "__init__.py")), module


def test_refuses_to_build_inside_src() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(ROOT / "src" / "compiled")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2
    assert "must not be inside src/" in out.stderr
    assert not (ROOT / "src" / "compiled").exists()

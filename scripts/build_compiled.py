"""Build syndic's optional compiled tree: the hot, strictly typed modules through mypyc.

The result is a complete copy of the ``syndic`` package in ``build/compiled``
(``--out``) in which the modules of :data:`COMPILED_MODULES` are C extensions
and every other module is the plain ``.py`` file copied from ``src/``. Nothing
is ever built next to the sources: a stale ``.so`` beside a ``.py`` in
``src/`` would silently shadow later edits of that file.

Use it by putting the tree first on the path (``make test-compiled`` does)::

    make compiled
    PYTHONPATH=build/compiled .venv/bin/syndic serve ...

Without that ``PYTHONPATH`` (or with ``SYNDIC_PURE=1``, which ``make
test-compiled`` honours) syndic runs as pure Python, as it always does; the
compiled tree changes no behaviour, only speed.

Every run copies the ``.py`` files afresh (so the copied modules match
``src/``) and recompiles; mypyc rewrites a generated C file only when it
changes, and setuptools skips a C file whose object is newer, so a second run
with no source change costs the type check alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGE = ROOT / "src" / "syndic"
DEFAULT_OUT = ROOT / "build" / "compiled"

# The hot modules that mypyc compiles as they are. Left interpreted:
# exception modules (mypyc cannot compile a class deriving from a builtin
# exception other than Exception), the packages' __init__ files, and every
# module whose public functions or message classes take values straight from
# a Python caller and promise a typed error for a wrong type (the messages,
# RaftNode's API, Wal and SnapshotStore): compiled, mypyc would refuse such a
# value with its own TypeError before the module's check could name it.
COMPILED_MODULES = (
    "syndic/raft/log.py",
    "syndic/raft/progress.py",
    "syndic/raft/membership.py",
    "syndic/kv/lease.py",
    "syndic/kv/mvcc.py",
    "syndic/kv/snapshot.py",
    "syndic/storage/records.py",
    "syndic/storage/recovery.py",
    "syndic/server/entry_codec.py",
)

# mypyc type-checks what it compiles; these settings mirror pyproject's
# [tool.mypy] (strict, and the untyped third-party packages syndic uses).
MYPY_CONFIG = """\
[mypy]
python_version = 3.11
strict = True
warn_unreachable = True

[mypy-sortedcontainers.*,uvloop.*,grpc.*,aetcd.*]
ignore_missing_imports = True

# Generated protobuf code (the entry codec decodes a client's request with
# it), which pyproject's [tool.mypy] excludes.
[mypy-syndic.api.gen.*]
ignore_errors = True
"""


def copy_sources(out: Path) -> None:
    """Mirror ``src/syndic``'s ``.py`` files into ``out/syndic``; drop ones gone from src."""
    target = out / "syndic"
    wanted: set[Path] = set()
    for source in SOURCE_PACKAGE.rglob("*"):
        if "__pycache__" in source.parts or source.is_dir():
            continue
        relative = source.relative_to(SOURCE_PACKAGE)
        wanted.add(relative)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if not destination.exists() or destination.read_bytes() != source.read_bytes():
            shutil.copy2(source, destination)
    for stale in target.rglob("*.py"):
        if stale.relative_to(target) not in wanted:
            stale.unlink()
    for shared in out.glob("*__mypyc.*.so"):
        # The runtime library of a module set: rebuilt, under a name of its
        # own, for the current set; an older set's copy would linger unused.
        shared.unlink()
    for extension in target.rglob("*.so"):
        # A module dropped from COMPILED_MODULES must not keep shadowing its copy.
        module = extension.relative_to(out).with_name(extension.name.split(".")[0] + ".py")
        if module.as_posix() not in COMPILED_MODULES:
            extension.unlink()


def compile_modules(out: Path, modules: tuple[str, ...], opt_level: str) -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    (out / "mypy.ini").write_text(MYPY_CONFIG)
    previous = Path.cwd()
    os.chdir(out)
    try:
        setup(
            name="syndic-compiled",
            ext_modules=mypycify(list(modules), opt_level=opt_level, debug_level="0"),
            script_args=[
                "build_ext",
                "--inplace",
                "--build-temp",
                "temp",
                "--build-lib",
                "temp/lib",
                "--quiet",
            ],
        )
    finally:
        os.chdir(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--opt-level", default="3", choices=("0", "1", "2", "3"))
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if out == SOURCE_PACKAGE.parent or SOURCE_PACKAGE.parent in out.parents:
        parser.error("--out must not be inside src/: extensions there would shadow edits")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    copy_sources(out)
    compile_modules(out, COMPILED_MODULES, args.opt_level)
    print(
        f"compiled {len(COMPILED_MODULES)} modules into {out} "
        f"in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

"""The checked-in generated code is exactly what scripts/gen-protos produces.

syndic ships src/syndic/api/gen/ so that running it needs no grpcio-tools;
these tests keep that copy from drifting away from the .proto files.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from google.protobuf import __version__ as protobuf_runtime_version
from google.protobuf import descriptor_pb2
from packaging.requirements import Requirement
from packaging.version import Version

from syndic.api.gen import auth_pb2, kv_pb2, rpc_pb2

REPO = Path(__file__).resolve().parents[2]
GEN_DIR = REPO / "src" / "syndic" / "api" / "gen"
PROTO_DIR = REPO / "src" / "syndic" / "api" / "proto"
SCRIPT = REPO / "scripts" / "gen-protos"
# protoc plus ruff over three files takes about a second; this only bounds a hang.
GENERATE_TIMEOUT_S = 120
_GENCODE_VERSION = re.compile(r"^# Protobuf Python Version: (\S+)$", re.MULTILINE)


def _gencode_version(path: Path) -> str:
    found = _GENCODE_VERSION.search(path.read_text())
    assert found, f"{path} has no 'Protobuf Python Version' header"
    return found.group(1)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pip install -e '.[dev]')")
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        found = shutil.which("ruff")
        if found is None:
            pytest.skip("ruff is not installed (pip install -e '.[dev]')")
        ruff = Path(found)
    out = tmp_path_factory.mktemp("gen")
    env = {**os.environ, "PYTHON": sys.executable, "RUFF": str(ruff)}
    subprocess.run(
        [str(SCRIPT), str(out)],
        check=True,
        env=env,
        cwd=REPO,
        timeout=GENERATE_TIMEOUT_S,
        capture_output=True,
    )
    return out / "syndic" / "api" / "gen"


def _files(directory: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in (".py", ".pyi")
    }


def test_every_proto_has_checked_in_modules() -> None:
    for proto in PROTO_DIR.glob("*.proto"):
        assert (GEN_DIR / f"{proto.stem}_pb2.py").is_file(), proto.name
        assert (GEN_DIR / f"{proto.stem}_pb2.pyi").is_file(), proto.name


def test_checked_in_descriptors_match_the_protos(regenerated: Path) -> None:
    # Independent of the protoc version: the serialized descriptor embedded
    # in each module is what the .proto files say today.
    for module in (auth_pb2, kv_pb2, rpc_pb2):
        name = Path(module.DESCRIPTOR.name).stem
        text = (regenerated / f"{name}_pb2.py").read_text()
        checked_in = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(checked_in)
        fresh = descriptor_pb2.FileDescriptorProto.FromString(_embedded_descriptor(text))
        assert fresh == checked_in, f"{name}.proto changed; run scripts/gen-protos"


def _embedded_descriptor(module_text: str) -> bytes:
    start = module_text.index("AddSerializedFile(") + len("AddSerializedFile(")
    end = module_text.index(")\n", start)
    data = ast.literal_eval(module_text[start:end].strip().rstrip(","))
    assert isinstance(data, bytes)
    return data


def test_checked_in_files_are_byte_identical_to_a_fresh_generation(regenerated: Path) -> None:
    fresh_version = _gencode_version(regenerated / "rpc_pb2.py")
    checked_in_version = _gencode_version(GEN_DIR / "rpc_pb2.py")
    if fresh_version != checked_in_version:
        pytest.skip(
            f"installed protoc emits gencode {fresh_version}, the checked-in files are "
            f"{checked_in_version}; descriptors are compared by the test above"
        )
    fresh = _files(regenerated)
    checked_in = _files(GEN_DIR)
    assert fresh.keys() == checked_in.keys(), "run scripts/gen-protos"
    for name, data in fresh.items():
        assert checked_in[name] == data, f"{name} drifted; run scripts/gen-protos"
    assert (regenerated / "__init__.py").read_bytes() == (GEN_DIR / "__init__.py").read_bytes()


def test_protobuf_pin_admits_the_gencode_and_the_installed_runtime() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [
        Requirement(line)
        for line in pyproject["project"]["dependencies"]
        if Requirement(line).name == "protobuf"
    ]
    assert len(pins) == 1
    specifier = pins[0].specifier
    gencode = Version(_gencode_version(GEN_DIR / "rpc_pb2.py"))
    # The runtime refuses gencode newer than itself, so the floor of the pin
    # must be at least the gencode version.
    floors = [Version(s.version) for s in specifier if s.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= gencode
    assert Version(protobuf_runtime_version) in specifier
    assert Version(f"{gencode.major + 1}.0.0") not in specifier

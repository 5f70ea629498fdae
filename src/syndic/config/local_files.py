"""The SDK's local directories: snapshots of the last good config, and failover files.

* **Snapshot directory**: after every config the SDK gets from the centre,
  it writes ``{dir}/{namespace}/{group}/{data_id}.json`` (the stored entry,
  still sealed if encrypted, with the keyring that opens it), atomically:
  temporary file, fsync, rename. When the centre is unreachable at start,
  the service starts from it.
* **Failover directory**: an operator drops ``{dir}/{namespace}/{group}/{data_id}``
  (the plain content); while the file exists it overrides the centre for
  that config, and deleting it gives the centre's content back.

The snapshot never holds plaintext of an encrypted config: opening it
needs the master key, as opening the stored value does.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from syndic.config import crypto
from syndic.config.model import ConfigId, Entry

# A failover file is a config, bounded as one; refuse to read a huge file by mistake.
FAILOVER_FILE_BYTES_MAX = 1 << 20


@dataclass(frozen=True, slots=True)
class Snapshot:
    entry: Entry
    keyring: crypto.Keyring | None
    revision: int


def snapshot_path(root: Path, cid: ConfigId) -> Path:
    return root / cid.namespace / cid.group / f"{cid.data_id}.json"


def write_snapshot(root: Path, cid: ConfigId, snap: Snapshot) -> None:
    path = snapshot_path(root, cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "entry": snap.entry.to_json(),
        "keyring": json.loads(snap.keyring.encode()) if snap.keyring is not None else None,
        "revision": snap.revision,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(doc).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshot(root: Path, cid: ConfigId) -> Snapshot | None:
    """The last good config, or None if there is none (or it is unreadable)."""
    path = snapshot_path(root, cid)
    try:
        doc = json.loads(path.read_bytes())
        entry = Entry.decode(json.dumps(doc["entry"]).encode())
        ring = doc.get("keyring")
        keyring = crypto.Keyring.decode(json.dumps(ring).encode()) if ring else None
        return Snapshot(entry, keyring, int(doc["revision"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A torn or foreign file is no snapshot; the caller logs that none was usable.
        return None


def failover_path(root: Path, cid: ConfigId) -> Path:
    return root / cid.namespace / cid.group / cid.data_id


def read_failover(root: Path, cid: ConfigId) -> str | None:
    path = failover_path(root, cid)
    try:
        with path.open("rb") as f:
            raw = f.read(FAILOVER_FILE_BYTES_MAX + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    if len(raw) > FAILOVER_FILE_BYTES_MAX:
        raise ValueError(f"{path}: over {FAILOVER_FILE_BYTES_MAX} bytes, not a config")
    return raw.decode("utf-8")

"""WAL group-commit throughput against a raw os.write + os.fsync loop.

For each batch size (entries of 256-byte payloads per fsync) the WAL runs
rounds of ``append(hard_state, batch)`` + ``sync()``; the peer writes the very
same number of bytes per round with one ``os.write`` and one ``os.fsync`` on a
plain file, which is the ceiling any WAL on this disk can approach. The ratio
column is WAL / raw for fsyncs per second.

Run: ``.venv/bin/python bench/wal.py [--quick]``; writes bench/results/wal.json.
The scratch directory is created next to this file (on the real disk, never
/dev/shm) and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from syndic.raft import Entry, HardState
from syndic.storage import Wal

PAYLOAD_SIZE_BYTES = 256
BATCH_SIZES = (1, 16, 256)
# Each measurement stops at whichever bound comes first.
ROUNDS_MAX = 200_000
FULL_DURATION_S = 20.0
QUICK_DURATION_S = 3.0
RESULTS_PATH = Path(__file__).parent / "results" / "wal.json"


@dataclass(frozen=True, slots=True)
class Measurement:
    rounds: int
    elapsed_s: float
    payload_bytes: int
    disk_bytes: int

    @property
    def fsyncs_per_s(self) -> float:
        return self.rounds / self.elapsed_s

    @property
    def payload_mb_per_s(self) -> float:
        return self.payload_bytes / self.elapsed_s / 1e6

    @property
    def disk_mb_per_s(self) -> float:
        return self.disk_bytes / self.elapsed_s / 1e6

    def as_dict(self) -> dict[str, float]:
        return {
            "rounds": self.rounds,
            "elapsed_s": round(self.elapsed_s, 4),
            "fsyncs_per_s": round(self.fsyncs_per_s, 1),
            "payload_mb_per_s": round(self.payload_mb_per_s, 3),
            "disk_mb_per_s": round(self.disk_mb_per_s, 3),
        }


SLICES = 8  # wal and raw alternate in short slices so both see the same disk weather


def bench_pair(scratch: str, batch_size: int, duration_s: float) -> tuple[Measurement, Measurement]:
    """Measure the WAL and the raw loop in alternating slices of ``duration_s / SLICES``."""
    payload = os.urandom(PAYLOAD_SIZE_BYTES)
    wal_dir = os.path.join(scratch, f"wal-{batch_size}")
    raw_path = os.path.join(scratch, f"raw-{batch_size}.log")
    slice_s = duration_s / SLICES
    index = 0
    wal_rounds = raw_rounds = 0
    wal_elapsed = raw_elapsed = 0.0
    raw_bytes = 0
    raw_fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with Wal.open(wal_dir) as wal:
            start_bytes = wal.status().segment_size_bytes
            for _ in range(SLICES):
                rounds = 0
                started = time.perf_counter()
                deadline = started + slice_s
                while rounds < ROUNDS_MAX and time.perf_counter() < deadline:
                    batch = [
                        Entry(term=1, index=index + n + 1, data=payload) for n in range(batch_size)
                    ]
                    index += batch_size
                    wal.append(HardState(term=1, vote=1, commit=index), batch)
                    wal.sync()
                    rounds += 1
                wal_elapsed += time.perf_counter() - started
                wal_rounds += rounds
                # The peer writes exactly as many bytes per fsync as the WAL did.
                wal_bytes = _segment_bytes(wal_dir) - start_bytes
                data = os.urandom(max(1, wal_bytes // wal_rounds))
                rounds = 0
                started = time.perf_counter()
                deadline = started + slice_s
                while rounds < ROUNDS_MAX and time.perf_counter() < deadline:
                    os.write(raw_fd, data)
                    os.fsync(raw_fd)
                    rounds += 1
                raw_elapsed += time.perf_counter() - started
                raw_rounds += rounds
                raw_bytes += rounds * len(data)
    finally:
        os.close(raw_fd)
    wal_measurement = Measurement(
        wal_rounds,
        wal_elapsed,
        wal_rounds * batch_size * PAYLOAD_SIZE_BYTES,
        _segment_bytes(wal_dir) - start_bytes,
    )
    shutil.rmtree(wal_dir)
    os.unlink(raw_path)
    return wal_measurement, Measurement(raw_rounds, raw_elapsed, raw_bytes, raw_bytes)


def _segment_bytes(dir_path: str) -> int:
    # Segment heads written at rollover are a few dozen bytes each: negligible.
    return sum(
        os.path.getsize(os.path.join(dir_path, name))
        for name in os.listdir(dir_path)
        if name.endswith(".wal")
    )


def filesystem_of(path: str) -> str:
    best, fs_type = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount_point = fields[1]
                if real.startswith(mount_point) and len(mount_point) > len(best):
                    best, fs_type = mount_point, f"{fields[2]} ({fields[0]} on {mount_point})"
    except OSError:
        pass
    return fs_type


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (< 30 s in total)")
    args = parser.parse_args()
    duration_s = QUICK_DURATION_S if args.quick else FULL_DURATION_S
    scratch = tempfile.mkdtemp(prefix=".wal-bench-", dir=Path(__file__).parent)
    fs_type = filesystem_of(scratch)
    if "tmpfs" in fs_type:
        print(f"refusing to benchmark fsync on {fs_type}", file=sys.stderr)
        return 2
    rows = []
    try:
        for batch_size in BATCH_SIZES:
            wal, raw = bench_pair(scratch, batch_size, duration_s)
            rows.append(
                {
                    "batch_entries": batch_size,
                    "round_bytes": wal.disk_bytes // max(1, wal.rounds),
                    "wal": wal.as_dict(),
                    "raw": raw.as_dict(),
                    "ratio_fsyncs": round(wal.fsyncs_per_s / raw.fsyncs_per_s, 3),
                }
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"WAL group commit vs raw os.write+os.fsync on {fs_type}")
    print(
        f"entries of {PAYLOAD_SIZE_BYTES} B payload; {duration_s:.1f} s per pair, "
        f"wal and raw alternating in {SLICES} slices"
    )
    header = (
        f"{'batch':>6} {'bytes/fsync':>11} {'wal fsync/s':>12} {'wal MB/s':>9} "
        f"{'raw fsync/s':>12} {'raw MB/s':>9} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        wal_row, raw_row = row["wal"], row["raw"]
        assert isinstance(wal_row, dict) and isinstance(raw_row, dict)
        print(
            f"{row['batch_entries']:>6} {row['round_bytes']:>11} "
            f"{wal_row['fsyncs_per_s']:>12.0f} {wal_row['payload_mb_per_s']:>9.2f} "
            f"{raw_row['fsyncs_per_s']:>12.0f} {raw_row['disk_mb_per_s']:>9.2f} "
            f"{row['ratio_fsyncs']:>6.2f}"
        )
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(
        json.dumps(
            {
                "suite": "wal",
                "peer": "raw os.write + os.fsync loop, same bytes per fsync",
                "quick": args.quick,
                "filesystem": fs_type,
                "python": platform.python_version(),
                "payload_size_bytes": PAYLOAD_SIZE_BYTES,
                "duration_s_per_cell": duration_s,
                "rows": rows,
                "notes": "wal MB/s counts entry payload bytes; raw MB/s counts bytes written",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

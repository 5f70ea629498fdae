"""The simulator runs production parts: the server's state machine, the real
WAL, per-member clocks, watches and leases; a replay is byte-identical."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from syndic.check.raft_invariants import SafetyViolationError
from syndic.check.watch_guarantees import WriteEvent
from syndic.cli.sim import sim
from syndic.kv.messages import EventType
from syndic.sim import SimConfig, run_simulation
from syndic.sim.clock import MemberClock, SimulationError
from syndic.sim.watchers import RevisionLog


def test_member_clocks_drift_and_skew() -> None:
    fast = MemberClock(offset_ms=-3 * 3_600_000, rate_ppm=10_000)
    slow = MemberClock(offset_ms=5 * 3_600_000, rate_ppm=-10_000)
    # After 100 s of true time the two clocks' tick counts differ by about 2 %.
    assert fast.tick_due_ms(10_000, tick_ms=10) < 100_000 < slow.tick_due_ms(10_000, tick_ms=10)
    assert slow.local_ms(0) - fast.local_ms(0) == 8 * 3_600_000
    with pytest.raises(SimulationError):
        MemberClock(offset_ms=0, rate_ppm=1_000_000)


@pytest.fixture(scope="module")
def transcripts() -> list[str]:
    texts = []
    for seed in range(1, 5):
        result = run_simulation(SimConfig(seed=seed, trace=True))
        assert result.ok, result.violation
        texts.append("\n".join(result.transcript))
    return texts


def test_a_run_exercises_the_real_store_wal_leases_and_watches(transcripts: list[str]) -> None:
    text = transcripts[2]
    assert "CLOCKS n1=" in text
    assert "MVCC rev" in text and "PutRequest" in text and "TxnRequest" in text
    assert "WAL fsync" in text
    assert "CHECK watch w1" in text
    for kind in ("read", "serial-read", "write", "cas", "delete", "lease-grant", "keep-alive"):
        assert f"{kind}(" in text or f" {kind} ok" in text, kind


def test_leases_expire_on_the_leaders_clock_within_a_sweep(transcripts: list[str]) -> None:
    assert sum(text.count("LEASE expire") for text in transcripts) > 0


def test_the_revision_log_reports_divergent_members() -> None:
    log = RevisionLog()
    log.on_revision(1, [(b"k0", (1, 1, 1, 0, b"a"), None)])
    log.on_revision(1, [(b"k0", (1, 1, 1, 0, b"a"), None)])  # the same, from another member
    assert log.writes() == [WriteEvent(1, b"k0", EventType.PUT, b"a")]
    with pytest.raises(SafetyViolationError, match="divergence"):
        log.on_revision(1, [(b"k0", (1, 1, 1, 0, b"b"), None)])


def test_a_failing_seed_replays_byte_for_byte() -> None:
    args = ["--nodes", "5", "--seed", "1", "--bug", "watch-drop-on-compact", "--trace"]
    first = CliRunner().invoke(sim, args)
    second = CliRunner().invoke(sim, args)
    assert first.exit_code == second.exit_code == 1
    assert "VIOLATION" in first.output
    replay = first.output.strip().splitlines()[-1]
    assert replay.startswith("replay: syndic sim ")
    assert first.output == second.output
    again = CliRunner().invoke(sim, replay.split()[3:])
    assert again.output == first.output

"""One simulated run from one seed: safety phase, liveness phase, checks.

``run_simulation(SimConfig(seed=...))`` builds the cluster, the network, the
clients and the nemesis from a single ``random.Random(seed)``, then processes
events one at a time. After every event the Raft safety invariants are
checked; at the end the client history is checked for linearizability. The
same configuration always produces the same transcript, byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from syndic.check.linearizability import DEFAULT_MAX_STATES, Verdict, check_history
from syndic.check.raft_invariants import RaftSafetyChecker, SafetyViolationError
from syndic.sim.buggify import validate_bugs
from syndic.sim.clock import VirtualClock
from syndic.sim.cluster import ClusterConfig, SimCluster
from syndic.sim.nemesis import ALL_FAULTS, Nemesis, NemesisConfig, faults_spec
from syndic.sim.network import SimNetwork
from syndic.sim.scenarios import SCENARIOS, Plan, apply_scenario
from syndic.sim.watchers import WatchClient
from syndic.sim.workload import Workload, WorkloadConfig

# Cluster sizes the simulator accepts: one member has nothing to replicate to;
# past this, a run is too slow to be a useful unit of a sweep.
MIN_NODES = 1
MAX_NODES = 9

# The transcript notes the commit index each time it passes a multiple of this.
COMMIT_TRACE_STEP_ENTRIES = 25

# A sound cluster handles tens of events per tick, with short bursts when a
# lagging member catches up; this many events over a whole window of ticks is
# a message storm that never converges (e.g. an append/reject ping-pong), a
# liveness failure in its own right, and it would stall the sweep.
STORM_WINDOW_TICKS = 20
STORM_EVENTS_PER_WINDOW = 8_000

# A safety phase this long is hours of virtual time: a typo, not a test.
MAX_SAFETY_TICKS = 1_000_000


class SimConfigError(ValueError):
    """A simulator configuration that cannot run (bad sizes, unknown names)."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a run depends on; ``seed`` decides every random choice.

    ``safety_ticks`` is the length of the faulty phase; the liveness phase then
    allows ``liveness_ticks`` for a leader to be elected and a client write
    invoked after the heal to be committed and acknowledged; ``settle_ticks``
    more run after that before the final checks.
    """

    seed: int
    nodes: int = 5
    faults: frozenset[str] = ALL_FAULTS
    bugs: frozenset[str] = frozenset()
    safety_ticks: int = 300
    liveness_ticks: int = 300
    settle_ticks: int = 120
    tick_ms: int = 10
    trace: bool = False
    scenario: str = "default"
    max_lin_states: int = DEFAULT_MAX_STATES
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    nemesis: NemesisConfig = field(default_factory=NemesisConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SimConfigError(f"seed must be an int >= 0, got {self.seed!r}")
        if not MIN_NODES <= self.nodes <= MAX_NODES:
            raise SimConfigError(f"nodes must be in [{MIN_NODES}, {MAX_NODES}], got {self.nodes}")
        if not 1 <= self.safety_ticks <= MAX_SAFETY_TICKS:
            raise SimConfigError(
                f"safety_ticks must be in [1, {MAX_SAFETY_TICKS}], got {self.safety_ticks}"
            )
        if self.liveness_ticks < 1 or self.settle_ticks < 0 or self.tick_ms < 1:
            raise SimConfigError("liveness_ticks and tick_ms must be >= 1, settle_ticks >= 0")
        unknown_faults = sorted(self.faults - ALL_FAULTS)
        if unknown_faults:
            raise SimConfigError(f"unknown fault kinds {unknown_faults}")
        try:
            validate_bugs(self.bugs)
        except ValueError as exc:
            raise SimConfigError(str(exc)) from exc
        if self.scenario not in SCENARIOS:
            raise SimConfigError(
                f"unknown scenario {self.scenario!r}; known: {', '.join(SCENARIOS)}"
            )

    def replay_command(self) -> str:
        """The shell command that re-runs exactly this seed and prints its transcript."""
        parts = [
            "syndic sim",
            f"--nodes {self.nodes}",
            f"--seed {self.seed}",
            f"--faults {faults_spec(self.faults)}",
            f"--ticks {self.safety_ticks}",
            f"--scenario {self.scenario}",
        ]
        parts.extend(f"--bug {b}" for b in sorted(self.bugs))
        parts.append("--trace")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str
    at_ms: int

    def describe(self) -> str:
        return f"{self.invariant} at {self.at_ms} ms: {self.detail}"


@dataclass(frozen=True, slots=True)
class SimResult:
    config: SimConfig
    violation: Violation | None
    stats: dict[str, object]
    transcript: tuple[str, ...]
    digest: str
    client_ops: int
    virtual_ms: int

    @property
    def ok(self) -> bool:
        return self.violation is None


class _Run:
    """State of one run; exists so the phases can share the pieces."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.clock = VirtualClock(cfg.tick_ms)
        self.lines: list[str] = []
        self.digest = hashlib.sha256()
        self.checker = RaftSafetyChecker()
        self.plan = apply_scenario(cfg.scenario, Plan(cfg.cluster, cfg.workload, cfg.nemesis))
        ids = list(range(1, cfg.nodes + 1))
        self.cluster = SimCluster(
            ids,
            self.rng,
            self.clock,
            replace(self.plan.cluster, tick_ms=cfg.tick_ms),
            self.checker,
            cfg.bugs,
            self.trace,
            disk_faults="disk" in cfg.faults,
        )
        self.network = SimNetwork(
            self.rng, self.clock, self.plan.nemesis.calm_network, self.cluster.deliver
        )
        self.cluster.network = self.network
        self.workload = Workload(
            self.rng,
            self.clock,
            self.plan.workload,
            ids,
            self.cluster.client_request,
            self.trace,
        )
        self.cluster.reply_to_client = self.workload.reply
        self.watchers = [
            WatchClient(
                i + 1,
                self.rng,
                self.clock,
                self.cluster,
                ids,
                self.plan.workload.watch_pull_interval_ms,
                self.trace,
            )
            for i in range(self.plan.workload.watchers)
        ]
        self.nemesis = Nemesis(
            self.rng,
            self.clock,
            self.cluster,
            self.network,
            cfg.faults,
            self.plan.nemesis,
            self.trace,
        )
        self.violation: Violation | None = None
        self.phase = "safety"
        self.liveness_started_ms = 0
        self.stop_at_ms: int | None = None

    def trace(self, line: str) -> None:
        text = f"{self.clock.now_ms:>8} {line}"
        self.digest.update(text.encode())
        self.digest.update(b"\n")
        if self.cfg.trace:
            self.lines.append(text)

    def _begin_liveness(self) -> None:
        self.phase = "liveness"
        self.liveness_started_ms = self.clock.now_ms
        self.nemesis.heal_for_liveness()
        self.workload.reply_loss_rate = 0.0
        self.workload.progress_since_ms = self.clock.now_ms

    def _reconfig_label(self) -> str:
        if "membership" not in self.cfg.faults:
            return ""
        return f" strict_reconfig={self.nemesis.reconfig.strict}"

    def run(self) -> SimResult:
        cfg = self.cfg
        self.trace(
            f"START seed={cfg.seed} nodes={cfg.nodes} faults={faults_spec(cfg.faults)} "
            f"bugs={sorted(cfg.bugs)} scenario={cfg.scenario} safety_ticks={cfg.safety_ticks} "
            f"entries_per_append={self.cluster.max_entries_per_message}{self._reconfig_label()}"
        )
        self.trace(f"CLOCKS {self.cluster.clocks_description()}")
        safety_end_ms = cfg.safety_ticks * cfg.tick_ms
        liveness_deadline_ms = safety_end_ms + cfg.liveness_ticks * cfg.tick_ms
        self.cluster.start_clocks(cfg.tick_ms)
        self.clock.schedule(safety_end_ms, self._begin_liveness, "liveness")
        self.workload.start()
        for watcher in self.watchers:
            watcher.start()
        self.nemesis.start()
        try:
            self._loop(liveness_deadline_ms)
            if self.violation is None:
                self._final_checks()
        except SafetyViolationError as exc:
            self._record(exc.invariant, exc.detail)
        return self._result()

    def _loop(self, liveness_deadline_ms: int) -> None:
        clock = self.clock
        cluster = self.cluster
        checker = self.checker
        next_commit_note = COMMIT_TRACE_STEP_ENTRIES
        window_start_tick = 0
        window_start_events = 0
        # This loop runs once per event (tens of thousands per seed): the
        # objects it consults on every turn are looked up once, here. The
        # cluster clears and fills the same touched set, and the lease checker
        # appends to the same list, for the whole run.
        tick_ms = clock.tick_ms
        touched = cluster.touched
        lease_violations = cluster.leases.violations
        # Only check_step moves the checker's commit index: after an event
        # that touched no member there is no new commit to note.
        stepped = False
        while True:
            now_ticks = clock.now_ms // tick_ms
            if now_ticks - window_start_tick >= STORM_WINDOW_TICKS:
                events_run = clock.events_run
                if events_run - window_start_events > STORM_EVENTS_PER_WINDOW:
                    self._record(
                        "message-storm",
                        f"{events_run - window_start_events} events in the "
                        f"{STORM_WINDOW_TICKS} ticks before tick {now_ticks}",
                    )
                    return
                window_start_tick = now_ticks
                window_start_events = events_run
            if stepped:
                committed = checker.committed_index
                if committed >= next_commit_note:
                    self.trace(f"COMMIT index {committed}")
                    next_commit_note = committed + COMMIT_TRACE_STEP_ENTRIES
            action, label = clock.pop_due()
            touched.clear()
            stepped = False
            try:
                action()
                # Every input to a core marks its member touched; an event that
                # touched none changed no core and no fact the checker keeps.
                if touched:
                    stepped = True
                    checker.check_step(cluster.live_cores(), touched, only_touched_changed=True)
                if lease_violations:
                    first = lease_violations[0]
                    raise SafetyViolationError(first.rule, first.describe())
            except SafetyViolationError:
                raise
            except Exception as exc:  # the core or runtime blew up: a finding, with its seed
                self._record("runtime-error", f"{type(exc).__name__}: {exc} (in {label})")
                return
            if self.phase != "liveness":
                continue
            if self.stop_at_ms is None and self.workload.progress_made:
                elapsed = (clock.now_ms - self.liveness_started_ms) // self.cfg.tick_ms
                self.trace(f"LIVENESS ok: a new write committed {elapsed} ticks after heal")
                self.stop_at_ms = clock.now_ms + self.cfg.settle_ticks * self.cfg.tick_ms
            if self.stop_at_ms is not None and clock.now_ms >= self.stop_at_ms:
                return
            if self.stop_at_ms is None and clock.now_ms >= liveness_deadline_ms:
                leader = cluster.leader()
                self._record(
                    "liveness",
                    f"no client write committed within {self.cfg.liveness_ticks} ticks after "
                    f"the heal (current leader: {'n' + str(leader) if leader else 'none'})",
                )
                return

    def _final_checks(self) -> None:
        self.workload.finish()
        self.checker.check_logs_full(self.cluster.live_cores())
        self._check_serializable_reads()
        self._check_watches()
        if self.violation is not None:
            return
        result = check_history(self.workload.history, max_states=self.cfg.max_lin_states)
        self.trace(f"CHECK linearizability: {result.verdict.value} ({result.ops_total} ops)")
        if result.verdict is Verdict.VIOLATION:
            self._record("linearizability", result.explain())
        elif result.verdict is Verdict.UNKNOWN:
            # Not a violation, but not a pass either: report it so it is looked at.
            self._record("linearizability-unknown", result.explain())

    def _check_watches(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
            watcher.drain()
            problem = watcher.check(self.cluster.revisions)
            self.trace(
                f"CHECK watch w{watcher.client_id}: {len(watcher.responses)} responses, "
                f"through revision {watcher.last_revision}, {watcher.resumes} opens: "
                f"{problem or 'ok'}"
            )
            if problem is not None:
                self._record("watch", problem)
                return

    def _check_serializable_reads(self) -> None:
        """A serializable read may be stale, never invented: it returns a value
        some client wrote to that key, or nothing."""
        written = {(op.key, op.value) for op in self.workload.history if op.value is not None}
        for key, value in self.workload.serializable_reads:
            if value is not None and (key, value) not in written:
                self._record("serializable-read", f"read {value!r} from {key}, never written")
                return

    def _record(self, invariant: str, detail: str) -> None:
        if self.violation is None:
            self.violation = Violation(invariant, detail, self.clock.now_ms)
            self.trace(f"VIOLATION {invariant}: {detail}")

    def _result(self) -> SimResult:
        stats: dict[str, object] = {
            "events": self.clock.events_run,
            "virtual_ms": self.clock.now_ms,
            "checker_steps": self.checker.checks,
            "committed_index": self.checker.committed_index,
        }
        stats.update({f"net_{k}": v for k, v in asdict(self.network.stats).items()})
        stats.update({f"cluster_{k}": v for k, v in asdict(self.cluster.stats).items()})
        stats.update({f"nemesis_{k}": v for k, v in asdict(self.nemesis.stats).items()})
        stats.update({f"membership_{k}": v for k, v in asdict(self.nemesis.reconfig.stats).items()})
        stats.update({f"client_{k}": v for k, v in asdict(self.workload.stats).items()})
        return SimResult(
            config=self.cfg,
            violation=self.violation,
            stats=stats,
            transcript=tuple(self.lines),
            digest=self.digest.hexdigest(),
            client_ops=self.workload.stats.invoked,
            virtual_ms=self.clock.now_ms,
        )


def run_simulation(config: SimConfig) -> SimResult:
    """Run one seed to completion; never raises for a finding, only for bad config."""
    # The WAL logs each torn-tail repair; in a simulation they are routine and
    # the transcript records the crashes that cause them.
    storage_log = logging.getLogger("syndic.storage")
    level = storage_log.level
    storage_log.setLevel(logging.ERROR)
    try:
        return _Run(config).run()
    finally:
        storage_log.setLevel(level)


def run_sweep(
    base: SimConfig,
    seeds: list[int],
    on_result: Callable[[SimResult], None] | None = None,
) -> list[SimResult]:
    """Run ``base`` once per seed, in order."""
    results = []
    for seed in seeds:
        result = run_simulation(replace(base, seed=seed))
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results

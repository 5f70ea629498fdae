"""One etcdctl script, run against a 3-member syndic cluster and a 3-member
Debian etcd cluster: the outputs must match except for what legitimately
differs between two clusters (ids, addresses, timestamps, sizes, hashes, Raft
terms and indexes). The real etcd proves the expected outputs are etcd's, not
ours.

Most steps are one etcdctl call. The sessions between the two scripts drive
etcdctl commands that run until stopped (``watch``, ``elect``) as background
processes, and cover ``endpoint status``/``hashkv`` and ``snapshot
save``/``status``; they run the same steps on both systems and are compared
the same way.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.server.etcdctl_sessions import Background
from tests.server.processes import (
    NEEDS_ETCDCTL,
    MemberProcess,
    etcdctl,
    require_etcd,
    start_cluster,
    wait_healthy,
)

pytestmark = [
    pytest.mark.etcd,
    NEEDS_ETCDCTL,
]

# (arguments, stdin) in order; each step's stdout is compared after normalizing.
SCRIPT: list[tuple[list[str], str | None]] = [
    (["put", "/app/a", "1"], None),
    (["put", "/app/b", "2"], None),
    (["put", "/app/c", "3"], None),
    (["put", "/other", "x"], None),
    (["get", "/app/", "--prefix"], None),
    (["get", "/app/", "--prefix", "--limit=2"], None),
    (["get", "/app/", "--prefix", "--sort-by=KEY", "--order=DESCEND"], None),
    (["get", "/app/", "--prefix", "--keys-only"], None),
    (["get", "/app/a", "--rev=2"], None),
    (["get", "/app/", "--prefix", "--count-only", "-w", "fields"], None),
    (["put", "/app/a", "10", "--prev-kv"], None),
    (["del", "/app/b"], None),
    (["del", "/app/", "--prefix", "--prev-kv"], None),
    (["txn"], 'value("/other") = "x"\n\nput /txn ok\n\nput /txn failed\n\n'),
    (["txn"], 'value("/other") = "nope"\n\nput /txn ok\n\nput /txn failed\n\n'),
    (["get", "/txn"], None),
    (["get", "/missing"], None),
    (["compaction", "3"], None),
    (["get", "/app/a", "--rev=2"], None),
    (["get", "/app/a", "--rev=1000"], None),
    (["put", "", "v"], None),
    (["lock", "lk", "--", "echo", "in-lock"], None),
    (["member", "list", "-w", "json"], None),
    (["endpoint", "health"], None),
    # Leases: "{lease}" stands for the id the last grant printed.
    (["lease", "grant", "600"], None),
    (["put", "/leased", "v", "--lease={lease}"], None),
    (["lease", "timetolive", "{lease}", "--keys"], None),
    (["lease", "keep-alive", "--once", "{lease}"], None),
    (["lease", "list"], None),
    (["lease", "revoke", "{lease}"], None),
    (["get", "/leased"], None),
    (["lease", "timetolive", "{lease}"], None),
    (["lease", "revoke", "{lease}"], None),
    (["put", "/x", "v", "--lease=1234"], None),
]

# After the sessions. Authentication and permissions come last: once
# enabled, every step needs a user.
AUTH_SCRIPT: list[tuple[list[str], str | None]] = [
    (["auth", "enable"], None),
    (["user", "add", "root:rootpw"], None),
    (["user", "add", "root:again"], None),
    (["role", "add", "root"], None),
    (["user", "grant-role", "root", "root"], None),
    (["role", "add", "r1"], None),
    (["role", "grant-permission", "r1", "readwrite", "/p/", "--prefix"], None),
    (["role", "grant-permission", "r1", "read", "/ro"], None),
    (["role", "grant-permission", "r1", "write", "/wo", "--from-key"], None),
    (["role", "grant-permission", "nope", "read", "/x"], None),
    (["user", "add", "u1:u1pw"], None),
    (["user", "grant-role", "u1", "r1"], None),
    (["user", "grant-role", "u1", "nope"], None),
    (["user", "revoke-role", "root", "r1"], None),
    (["user", "list"], None),
    (["role", "list"], None),
    (["role", "get", "r1"], None),
    (["user", "get", "u1", "--detail"], None),
    (["auth", "enable"], None),
    (["get", "/other"], None),
    (["--user", "root:rootpw", "get", "/other"], None),
    (["--user", "root:wrong", "get", "/other"], None),
    (["--user", "u1:u1pw", "put", "/p/x", "1"], None),
    (["--user", "u1:u1pw", "get", "/p/", "--prefix"], None),
    (["--user", "u1:u1pw", "get", "/other"], None),
    (["--user", "u1:u1pw", "put", "/ro", "1"], None),
    (["--user", "u1:u1pw", "put", "/wz", "1"], None),
    (["--user", "u1:u1pw", "user", "list"], None),
    (["--user", "u1:u1pw", "user", "get", "u1"], None),
    (["--user", "u1:u1pw", "role", "get", "root"], None),
    (["--user", "root:rootpw", "user", "passwd", "u1", "--interactive=false"], "u1new\n"),
    (["--user", "u1:u1pw", "get", "/p/x"], None),
    (["--user", "u1:u1new", "get", "/p/x"], None),
    (["--user", "root:rootpw", "role", "revoke-permission", "r1", "/p/", "--prefix"], None),
    (["--user", "u1:u1new", "get", "/p/x"], None),
    (["--user", "root:rootpw", "user", "delete", "root"], None),
    (["--user", "root:rootpw", "role", "delete", "root"], None),
    (["--user", "root:rootpw", "role", "delete", "r1"], None),
    (["--user", "root:rootpw", "user", "get", "u1"], None),
    (["--user", "root:rootpw", "auth", "disable"], None),
    (["get", "/p/x"], None),
]

# A step's label and what etcdctl showed: exit code, stdout, user-facing errors.
Outcome = tuple[int, str, str]
Results = list[tuple[str, Outcome]]


def normalize(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{16}\b", "<id>", text)
    text = re.sub(r'"(cluster_id|member_id|ID|raft_term|revision)":\d+', r'"\1":<n>', text)
    text = re.sub(r"took = [0-9.]+[mµn]?s", "took = <t>", text)
    # A second may tick between grant and the next call on either system.
    text = re.sub(r"(remaining|TTL)\((59\d|600)s\)", r"\1(<ttl>)", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)
    text = re.sub(r'"name":"m\d"', '"name":"<m>"', text)
    return text


def user_errors(stderr: str) -> str:
    # stderr also carries the client's JSON logs (retries, snapshot progress);
    # the user-facing lines are the rest ("Error: ...", "watch was canceled").
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("{"))


# ------------------------------------------------ endpoint and snapshot tables

# Columns of etcdctl 3.4's simple (comma-separated) output, which has no header.
STATUS_COLUMNS: Final = (
    "ENDPOINT",
    "ID",
    "VERSION",
    "DB SIZE",
    "IS LEADER",
    "IS LEARNER",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "ERRORS",
)
HASHKV_COLUMNS: Final = ("ENDPOINT", "HASH")
SNAPSHOT_COLUMNS: Final = ("HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE")

# Fields whose values legitimately differ between two clusters, by every name
# etcdctl gives them (table column, "fields" name, JSON key), and what they
# become. Ids and addresses are drawn per cluster; who leads follows election
# timing; sizes and hashes belong to each store's own encoding (syndic's
# snapshot is not etcd's bolt file byte for byte, and its HashKV hashes its
# own record layout); Raft terms and indexes count elections and internal
# entries (etcd's conf changes, syndic's member attributes) that differ.
# Revisions, key counts, versions' major.minor and learner flags stay.
_LEGITIMATE: Final = {
    "<addr>": ("ENDPOINT", "Endpoint"),
    "<id>": ("ID", "MemberID", "member_id", "ClusterID", "cluster_id", "Leader", "leader"),
    "<leader?>": ("IS LEADER",),
    "<size>": ("DB SIZE", "DBSize", "dbSize", "dbSizeInUse", "TOTAL SIZE", "Size", "totalSize"),
    "<term>": ("RAFT TERM", "RaftTerm", "raftTerm", "raft_term"),
    "<index>": (
        "RAFT INDEX",
        "RaftIndex",
        "raftIndex",
        "RAFT APPLIED INDEX",
        "RaftAppliedIndex",
        "raftAppliedIndex",
    ),
    "<hash>": ("HASH", "Hash", "hash"),
}
_PLACEHOLDER: Final = {name: mark for mark, names in _LEGITIMATE.items() for name in names}
_VERSION_FIELDS: Final = ("VERSION", "Version", "version")


def _field(name: str, value: str) -> str:
    if name in _VERSION_FIELDS:
        # syndic speaks etcd 3.4's API and reports 3.4.0; etcd its own patch release.
        return re.sub(r"^(\"?3\.4)\.\d+", r"\1.<patch>", value)
    return _PLACEHOLDER.get(name, value)


def _json_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _json_field(name, v) for name, v in value.items()}
    if isinstance(value, list):
        return [_json_fields(v) for v in value]
    return value


def _json_field(name: str, value: Any) -> Any:
    if name in _PLACEHOLDER:
        return _PLACEHOLDER[name]
    if name in _VERSION_FIELDS and isinstance(value, str):
        return _field(name, value)
    return _json_fields(value)


def table_shape(columns: tuple[str, ...]) -> Callable[[str], str]:
    """A normalizer for etcdctl's simple, table, fields and JSON outputs of one command."""

    def shape(stdout: str) -> str:
        lines = stdout.splitlines()
        if lines and lines[0].startswith(("[", "{")):
            return "\n".join(json.dumps(_json_fields(json.loads(line))) for line in lines)
        out = []
        header: list[str] = list(columns)
        for line in lines:
            if line.startswith("+"):
                continue  # table borders: their widths follow the values' widths
            if line.startswith("|"):
                cells = [cell.strip() for cell in line.strip("|").split("|")]
                if cells[0] in columns:
                    header = cells
                    out.append(" | ".join(cells))
                else:
                    out.append(" | ".join(map(_field, header, cells)))
            elif fields := re.fullmatch(r'"(\w+)" : (.*)', line):
                out.append(f'"{fields[1]}" : {_field(fields[1], fields[2])}')
            elif ", " in line:
                out.append(", ".join(map(_field, columns, line.split(", "))))
            else:
                out.append(line)
        return "\n".join(out)

    return shape


# ------------------------------------------------------------------- recorder


class Recorder:
    """Runs etcdctl against one cluster and keeps each step's normalized outcome."""

    def __init__(self, members: list[MemberProcess], scratch: Path) -> None:
        self.members = members
        self.endpoints = ",".join(m.endpoint for m in members)
        self.scratch = scratch
        self.results: Results = []
        # Lease ids this run saw (hex, as etcdctl prints them, which may be
        # shorter than 16 digits); drawn per cluster, so they become <id>.
        self.lease_ids: set[str] = set()
        self._background: list[Background] = []

    def normalize(self, text: str) -> str:
        for lease_id in sorted(self.lease_ids, key=len, reverse=True):
            text = re.sub(rf"\b{lease_id}\b", "<id>", text)
        return normalize(text.replace(str(self.scratch), "<dir>"))

    def quiet(self, *args: str, endpoints: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a step that only sets up or waits; its output is not compared."""
        out = etcdctl(endpoints or self.endpoints, *args)
        self.lease_ids.update(re.findall(r"lease ([0-9a-f]+) granted", out.stdout))
        return out

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        label: str | None = None,
        endpoints: str | None = None,
        shape: Callable[[str], str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        out = etcdctl(endpoints or self.endpoints, *args, input_text=stdin)
        self.lease_ids.update(re.findall(r"lease ([0-9a-f]+) granted", out.stdout))
        label = label or " ".join(args).replace(str(self.scratch), "<dir>")
        self.record(label, (out.returncode, out.stdout, out.stderr), shape)
        return out

    def record(
        self, label: str, outcome: Outcome, shape: Callable[[str], str] | None = None
    ) -> None:
        """Keep ``outcome`` normalized, its stdout by ``shape`` if given (a table of fields)."""
        returncode, stdout, stderr = outcome
        stdout = shape(stdout) if shape else self.normalize(stdout)
        self.results.append((label, (returncode, stdout, self.normalize(user_errors(stderr)))))

    def start(self, *args: str, interactive: bool = False) -> Background:
        process = Background(self.endpoints, *args, interactive=interactive)
        self._background.append(process)
        return process

    def revision(self) -> int:
        out = self.quiet("get", "/", "-w", "json")
        assert out.returncode == 0, out.stderr
        return int(json.loads(out.stdout)["header"]["revision"])

    def close(self) -> None:
        for process in self._background:
            process.kill()


def run_steps(ctl: Recorder, steps: list[tuple[list[str], str | None]]) -> None:
    lease = ""
    for template, stdin in steps:
        args = [arg.replace("{lease}", lease) for arg in template]
        out = ctl.run(*args, stdin=stdin, label=" ".join(template))
        granted = re.search(r"lease ([0-9a-f]+) granted", out.stdout)
        if granted and template[:2] == ["lease", "grant"]:
            lease = granted.group(1)


# ------------------------------------------------------------------- sessions


def has_progress(lines: list[str]) -> bool:
    return any(line.startswith("progress notify: ") for line in lines)


def without_progress_revision(outcome: Outcome) -> Outcome:
    # The revision a progress notification carries is the serving member's
    # at that moment; a follower may not have applied the last write yet.
    returncode, stdout, stderr = outcome
    return returncode, re.sub(r"progress notify: \d+", "progress notify: <rev>", stdout), stderr


def watch_session(ctl: Recorder) -> None:
    """Live watches (a prefix, one key with --prev-kv), then the same history by --rev."""
    start = ctl.revision() + 1
    # Interactive mode answers "progress" with "progress notify: REV" once
    # the server has handled the watch created before it on the same stream,
    # so the writes below start only when both watches are registered.
    live = ctl.start("watch", "-i", interactive=True)
    live.send("watch /wp/ --prefix")
    live.send("progress")
    prev = ctl.start("watch", "-i", interactive=True)
    prev.send("watch /wp/b --prev-kv")
    prev.send("progress")
    for watch in (live, prev):
        watch.wait_for(has_progress, "progress notification")
    ctl.run("put", "/wp/a", "1")
    ctl.run("put", "/wp/b", "2")
    ctl.run("put", "/wq/outside", "x")
    ctl.run("put", "/wp/b", "3")
    # Two puts in one revision: the events come in the transaction's order.
    ctl.run("txn", stdin="\nput /wp/d 4\nput /wp/c 5\n\n\n")
    ctl.run("del", "/wp/a")
    ctl.run("del", "/wp/b")
    ctl.run("put", "/wp/end", "6")
    live.wait_for_tail(["PUT", "/wp/end", "6"])
    prev.wait_for_tail(["DELETE", "/wp/b", "3", "/wp/b", ""])
    # Closing stdin ends an interactive etcdctl with "Error reading watch request line: EOF".
    ctl.record("watch -i: watch /wp/ --prefix", without_progress_revision(live.end_input()))
    ctl.record("watch -i: watch /wp/b --prev-kv", without_progress_revision(prev.end_input()))

    history = ctl.start("watch", "--prefix", "/wp/", f"--rev={start}")
    history.wait_for_tail(["PUT", "/wp/end", "6"])
    ctl.record("watch --prefix /wp/ --rev={start}", history.terminate())
    as_json = ctl.start("watch", "/wp/b", f"--rev={start}", "--prev-kv", "-w", "json")
    as_json.wait_for(lambda lines: any('"type":1' in line for line in lines), "the delete event")
    ctl.record("watch /wp/b --rev={start} --prev-kv -w json", as_json.terminate())
    show = 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"'
    execs = ctl.start("watch", "/wp/", "--prefix", f"--rev={start}", "--", "sh", "-c", show)
    # etcdctl prints a response's events, then runs the command once per event.
    execs.wait_for_tail(['"PUT" "/wp/end" "6"'])
    ctl.record("watch /wp/ --prefix --rev={start} -- sh -c ...", execs.terminate())
    # The script compacted at revision 3: the server cancels the watch.
    ctl.run("watch", "/app/a", "--rev=2")
    ctl.run("watch")


# Reads of the election's keys while a candidate starts; each is one etcdctl
# run (tens of ms), so this allows far more than a loaded machine needs.
CAMPAIGN_POLLS_MAX: Final = 300


def elect_session(ctl: Recorder) -> None:
    """An observer, a leader, and a candidate that waits until the leader resigns."""
    observer = ctl.start("elect", "--listen", "el")
    first = ctl.start("elect", "el", "p1")
    first.wait_for(lambda lines: lines[1:2] == ["p1"], "the first leader's key and proposal")
    ctl.lease_ids.update(re.findall(r"^el/([0-9a-f]+)$", first.stdout[0]))
    observer.wait_for(lambda lines: lines[1:2] == ["p1"], "the first leader observed")
    second = ctl.start("elect", "el", "p2")
    # The candidate's key exists once it campaigns; it must then wait.
    for _ in range(CAMPAIGN_POLLS_MAX):
        keys = ctl.quiet("get", "el/", "--prefix", "--keys-only").stdout.split()
        if len(keys) == 2:
            break
    else:
        raise AssertionError(f"the second candidate never campaigned: {keys}")
    ctl.lease_ids.update(key.removeprefix("el/") for key in keys)
    ctl.run("get", "el/", "--prefix", "--sort-by=CREATE")
    assert second.stdout == [], f"a second leader while the first holds: {second.stdout}"
    ctl.record("elect el p1 (resigns on SIGTERM)", first.terminate())
    second.wait_for(lambda lines: lines[1:2] == ["p2"], "the second leader's key and proposal")
    observer.wait_for(lambda lines: lines[3:4] == ["p2"], "the second leader observed")
    ctl.record("elect el p2 (resigns on SIGTERM)", second.terminate())
    ctl.record("elect --listen el", observer.terminate())
    ctl.run("get", "el/", "--prefix")
    ctl.run("elect", "el")
    ctl.run("elect", "--listen", "el", "p")


def revoke_leftover_leases(ctl: Recorder) -> None:
    # etcdctl's elect and lock sessions leave their leases to expire in 60 s;
    # revoked now, every later step sees the same lease table on both systems
    # however long the run took.
    listed = ctl.quiet("lease", "list").stdout.split()
    for lease_id in listed[3:]:  # after "found N leases"
        ctl.quiet("lease", "revoke", lease_id)
    ctl.run("lease", "list")


def endpoint_session(ctl: Recorder) -> None:
    status, hashes = table_shape(STATUS_COLUMNS), table_shape(HASHKV_COLUMNS)
    out = ctl.run("endpoint", "status", "-w", "json", shape=status)
    check_one_leader(json.loads(out.stdout))
    for form in ("simple", "table", "fields"):
        ctl.run("endpoint", "status", "-w", form, shape=status)
    ctl.run("endpoint", "status", "--cluster", shape=status)
    out = ctl.run("endpoint", "hashkv", "-w", "json", shape=hashes)
    check_same_hash(json.loads(out.stdout))
    ctl.run("endpoint", "hashkv", shape=hashes)
    ctl.run("endpoint", "hashkv", "-w", "table", shape=hashes)
    out = ctl.run("endpoint", "hashkv", "--rev=5", "-w", "json", shape=hashes)
    check_same_hash(json.loads(out.stdout))
    ctl.run("endpoint", "hashkv", "--rev=2")
    ctl.run("endpoint", "hashkv", "--rev=100000")


def check_one_leader(statuses: list[dict[str, Any]]) -> None:
    members = [s["Status"]["header"]["member_id"] for s in statuses]
    leaders = {s["Status"].get("leader", 0) for s in statuses}
    assert len(leaders) == 1 and leaders <= set(members), statuses


def check_same_hash(hashes: list[dict[str, Any]]) -> None:
    # Members that applied the same entries hold the same history.
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1, hashes


def snapshot_session(ctl: Recorder) -> None:
    """Save a snapshot from one member and read it with etcdctl's own bbolt reader."""
    path = str(ctl.scratch / "snap.db")
    shape = table_shape(SNAPSHOT_COLUMNS)
    ctl.run("snapshot", "save", path, label="snapshot save")
    ctl.run("snapshot", "save", path, endpoints=ctl.members[0].endpoint)
    for form in ("json", "simple", "table", "fields"):
        ctl.run("snapshot", "status", path, "-w", form, shape=shape)


def run_all(members: list[MemberProcess], scratch: Path) -> Results:
    ctl = Recorder(members, scratch)
    try:
        run_steps(ctl, SCRIPT)
        watch_session(ctl)
        elect_session(ctl)
        revoke_leftover_leases(ctl)
        endpoint_session(ctl)
        snapshot_session(ctl)
        run_steps(ctl, AUTH_SCRIPT)
    finally:
        ctl.close()
    return ctl.results


@pytest.fixture(scope="module")
def etcd_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    require_etcd()
    root = tmp_path_factory.mktemp("etcd")
    members = start_cluster("etcd", root, 3)
    try:
        wait_healthy(members)
        yield run_all(members, root)
    finally:
        for m in members:
            m.kill()


def test_etcdctl_sees_syndic_exactly_as_it_sees_etcd(etcd_results: Results, tmp_path: Path) -> None:
    members = start_cluster("syndic", tmp_path, 3)
    try:
        wait_healthy(members)
        syndic_results = run_all(members, tmp_path)
    finally:
        for m in members:
            m.kill()
    assert [label for label, _ in syndic_results] == [label for label, _ in etcd_results]
    for (label, want), (_, got) in zip(etcd_results, syndic_results, strict=True):
        assert got[0] == want[0], (label, want, got)
        assert got[1] == want[1], (label, want, got)
        if want[0] != 0:
            assert got[2] == want[2], (label, want, got)

"""One etcdctl script, run against a 3-member syndic cluster and a 3-member
Debian etcd cluster: the outputs must match except for ids and timestamps.
The real etcd proves the expected outputs are etcd's, not ours."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.processes import (
    ETCD,
    ETCDCTL,
    MemberProcess,
    etcdctl,
    start_cluster,
    wait_healthy,
)

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(ETCDCTL is None, reason="etcdctl (Debian's etcd-client) not on PATH"),
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
    # Authentication and permissions, last: once enabled, every step needs a user.
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


def normalize(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{16}\b", "<id>", text)
    text = re.sub(r'"(cluster_id|member_id|ID|raft_term|revision)":\d+', r'"\1":<n>', text)
    text = re.sub(r"took = [0-9.]+[mµn]?s", "took = <t>", text)
    # A second may tick between grant and the next call on either system.
    text = re.sub(r"(remaining|TTL)\((59\d|600)s\)", r"\1(<ttl>)", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)
    text = re.sub(r'"name":"m\d"', '"name":"<m>"', text)
    return text


def run_script(members: list[MemberProcess]) -> list[tuple[int, str, str]]:
    endpoints = ",".join(m.endpoint for m in members)
    results = []
    lease = ""
    for template, stdin in SCRIPT:
        args = [arg.replace("{lease}", lease) for arg in template]
        out = etcdctl(endpoints, *args, input_text=stdin)
        granted = re.search(r"lease ([0-9a-f]+) granted", out.stdout)
        if granted and template[:2] == ["lease", "grant"]:
            lease = granted.group(1)
        # stderr also carries the client's JSON retry logs; the user-facing
        # error is the "Error:" line.
        error = "\n".join(line for line in out.stderr.splitlines() if line.startswith("Error:"))
        results.append((out.returncode, normalize(out.stdout), normalize(error)))
    return results


@pytest.fixture(scope="module")
def etcd_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[int, str, str]]]:
    if ETCD is None:
        pytest.skip("etcd (Debian's etcd-server) not on PATH")
    members = start_cluster("etcd", tmp_path_factory.mktemp("etcd"), 3)
    try:
        wait_healthy(members)
        yield run_script(members)
    finally:
        for m in members:
            m.kill()


def test_etcdctl_sees_syndic_exactly_as_it_sees_etcd(
    etcd_results: list[tuple[int, str, str]], tmp_path: Path
) -> None:
    members = start_cluster("syndic", tmp_path, 3)
    try:
        wait_healthy(members)
        syndic_results = run_script(members)
    finally:
        for m in members:
            m.kill()
    for (args, _), want, got in zip(SCRIPT, etcd_results, syndic_results, strict=True):
        if args[:2] == ["member", "list"]:
            # Member JSON differs in field order only where etcd omits defaults.
            assert got[0] == want[0] == 0, (args, got)
            continue
        assert got[0] == want[0], (args, want, got)
        assert got[1] == want[1], (args, want, got)
        if want[0] != 0:
            assert got[2] == want[2], (args, want, got)

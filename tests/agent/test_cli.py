"""``syndic agent`` as a process: serves Consul's API over a store, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.server.cluster_util import free_port
from tests.stores import Store

SYNDIC = [sys.executable, "-m", "syndic"]


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# The command is the same over either store: one run, on syndic.
@pytest.mark.parametrize("store", ["syndic"], indirect=True)
def test_syndic_agent_serves_and_stops(store: Store) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *SYNDIC,
            "agent",
            "--endpoints",
            ",".join(store.endpoints),
            "--http-addr",
            f"127.0.0.1:{port}",
            "--node",
            "cli-node",
            "--key-prefix",
            f"t/cli-{store.kind}/registry/",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = request("GET", f"{url}/v1/agent/self")
                break
            except OSError:
                assert time.monotonic() < deadline, "agent did not start"
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                time.sleep(0.2)
        assert json.loads(body)["Config"]["NodeName"] == "cli-node"
        status, _ = request(
            "PUT",
            f"{url}/v1/agent/service/register",
            json.dumps({"Name": "cli-web", "Port": 1}).encode(),
        )
        assert status == 200
        status, body = request("GET", f"{url}/v1/catalog/service/cli-web")
        assert [e["Node"] for e in json.loads(body)] == ["cli-node"]
        request("PUT", f"{url}/v1/agent/service/deregister/cli-web")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]


def test_bad_address_is_a_usage_error() -> None:
    out = subprocess.run(
        [*SYNDIC, "agent", "--http-addr", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "bad address" in out.stderr

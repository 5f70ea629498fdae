"""Requests on the peer port (the member table for a joining member, membership
changes handed to the leader): well-formed ones are answered, hostile ones are
refused with a reason and change nothing, and a joining member's identity is
settled and checked as etcd's stored ids are."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import msgpack
import pytest

from syndic.server import bootstrap
from syndic.server.backend import Member
from syndic.server.bootstrap import (
    MemberIdentity,
    MemberIdentityError,
    derived_identity,
    join_cluster,
    settle_identity,
)
from syndic.server.config import load_config
from syndic.server.node import MemberNode
from syndic.server.peer_codec import (
    PEER_REQUEST_BYTES_MAX,
    PeerCodecError,
    decode_cluster_info,
    decode_reply,
    decode_request,
    encode_cluster_info,
    encode_reply,
    encode_request,
    is_request,
)
from syndic.server.transport import FRAME_HEADER, PeerRequester, PeerTransport, call_peer
from tests.server.cluster_util import cluster_configs, free_port

MEMBER = Member(0xABC, "m1", ("http://127.0.0.1:2380",), ("http://127.0.0.1:2379",), False)


def test_requests_and_replies_round_trip_and_are_told_from_raft_batches() -> None:
    body = encode_request("member_remove", [5])
    assert is_request(body)
    assert decode_request(body) == ("member_remove", [5])
    assert not is_request(msgpack.packb([1, [], []]))
    assert decode_cluster_info(encode_cluster_info(7, [MEMBER])) == (7, [MEMBER])
    assert decode_reply(encode_reply(False, ["NOT_FOUND", "etcdserver: member not found"])) == (
        False,
        ["NOT_FOUND", "etcdserver: member not found"],
    )


@pytest.mark.parametrize(
    "body",
    [
        encode_request("x", []) + b"\x00",  # trailing bytes
        encode_request("x", [])[:-1],  # truncated
        msgpack.packb([1, "request", 7, []]),  # op not a string
        msgpack.packb([1, "request", "x", "args"]),  # args not a list
        encode_request("x", ["a" * PEER_REQUEST_BYTES_MAX]),  # oversized
    ],
)
def test_malformed_requests_are_refused(body: bytes) -> None:
    with pytest.raises(PeerCodecError):
        decode_request(body)


@pytest.mark.parametrize(
    "payload",
    [
        "not a list",
        [0, []],  # cluster id 0
        [2**64, []],  # not 64-bit
        [1, [[1, "m", ["u"], ["c"]]]],  # short member row
        [1, [[1, "m", "u", ["c"], False]]],  # URLs not a list
        [1, [[True, "m", ["u"], ["c"], False]]],  # bool id
        [1, [[1, "m", ["u"], ["c"], False]] * 1025],  # too many members
    ],
)
def test_malformed_cluster_answers_are_refused(payload: Any) -> None:
    with pytest.raises(PeerCodecError):
        decode_cluster_info(payload)


@pytest.mark.parametrize(
    "body",
    [b"", b"\xc1", msgpack.packb([1, False, "why"]), msgpack.packb([2, True, None])],
)
def test_malformed_replies_are_refused(body: bytes) -> None:
    with pytest.raises(PeerCodecError):
        decode_reply(body)


async def test_a_member_answers_requests_and_refuses_hostile_ones(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        host, port = "127.0.0.1", int(config.listen_peer_urls[0].rsplit(":", 1)[1])
        ok, payload = await call_peer(host, port, "cluster", [], 2)
        assert ok
        cluster_id, members = decode_cluster_info(payload)
        assert cluster_id == node.cluster_id
        assert [m.id for m in members] == [node.id]
        before = node.members()
        for op, args in [
            ("member_remove", ["not an id"]),
            ("member_remove", [True]),
            ("member_add", [[], False]),
            ("member_add", [[1, 2], False]),
            ("format_disk", []),
        ]:
            ok, payload = await call_peer(host, port, op, args, 2)
            assert not ok and payload[0] == "INVALID_ARGUMENT", (op, payload)
        ok, payload = await call_peer(host, port, "member_remove", [12345], 2)
        assert (ok, payload) == (False, ["NOT_FOUND", "etcdserver: member not found"])
        # A malformed request frame gets a reason, and the port keeps serving.
        reader, writer = await asyncio.open_connection(host, port)
        bad = encode_request("x", [])[:-1]
        writer.write(FRAME_HEADER.pack(len(bad)) + bad)
        (length,) = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
        ok, payload = decode_reply(await reader.readexactly(length))
        assert not ok and payload[0] == "INVALID_ARGUMENT"
        writer.close()
        assert node.members() == before
        assert (await call_peer(host, port, "cluster", [], 2))[0]
    finally:
        await node.stop()


def test_identity_is_recorded_then_checked(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    mine = derived_identity(config)
    assert settle_identity(tmp_path, config, mine) == mine
    # A joined member restarts with the recorded ids, whatever the flags say.
    assert settle_identity(tmp_path, config, None) == mine
    with pytest.raises(MemberIdentityError, match="belongs to"):
        settle_identity(tmp_path, config, MemberIdentity(1, 2))
    (tmp_path / "identity").write_text("member zz cluster 1\n")
    with pytest.raises(MemberIdentityError, match="damaged"):
        settle_identity(tmp_path, config, mine)
    with pytest.raises(MemberIdentityError, match="no record"):
        settle_identity(tmp_path / "elsewhere", config, None)


async def test_joining_needs_a_running_member_that_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "JOIN_TIMEOUT_S", 0.5)
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        stranger_url = f"http://127.0.0.1:{free_port()}"
        joiner = load_config(
            {
                "name": "m9",
                "data-dir": str(tmp_path / "m9"),
                "listen-peer-urls": stranger_url,
                "initial-cluster": f"m1={config.listen_peer_urls[0]},m9={stranger_url}",
                "initial-cluster-state": "existing",
            },
            {},
        )
        with pytest.raises(MemberIdentityError, match="has no member with peer URLs"):
            await join_cluster(joiner)
        # With no member answering, the error names every URL tried.
        nobody = dataclasses.replace(
            joiner, initial_cluster=f"m1=http://127.0.0.1:{free_port()},m9={stranger_url}"
        )
        with pytest.raises(MemberIdentityError, match="cannot fetch the member table"):
            await join_cluster(nobody)
        # Nothing was written for the member that could not join.
        with pytest.raises(MemberIdentityError):
            await MemberNode(nobody).start()
        assert not (tmp_path / "m9" / "member" / "identity").exists()
    finally:
        await node.stop()


async def test_transport_without_a_request_handler_says_so() -> None:
    port = free_port()
    transport = PeerTransport(1, "127.0.0.1", port, lambda _: None, lambda _: None)
    await transport.start()
    try:
        ok, payload = await call_peer("127.0.0.1", port, "cluster", [], 2)
        assert (ok, payload[0]) == (False, "UNIMPLEMENTED")
    finally:
        await transport.stop()


async def test_a_requester_keeps_one_connection_and_redials_after_a_restart() -> None:
    port = free_port()

    async def answer(op: str, args: list[Any]) -> tuple[bool, Any]:
        return True, [op, *args]

    def serving() -> PeerTransport:
        return PeerTransport(
            9, "127.0.0.1", port, lambda _: None, lambda _: None, on_request=answer
        )

    server = serving()
    await server.start()
    requester = PeerRequester()
    try:
        for i in range(5):
            assert await requester.call("127.0.0.1", port, "echo", [i], 5) == (True, ["echo", i])
        assert len(server._inbound) == 1  # one connection for the five
        await server.stop()
        with pytest.raises(OSError):
            await requester.call("127.0.0.1", port, "echo", [0], 5)
        server = serving()
        await server.start()
        assert await requester.call("127.0.0.1", port, "echo", [7], 5) == (True, ["echo", 7])
        assert len(server._inbound) == 1
    finally:
        await requester.close()
        await server.stop()

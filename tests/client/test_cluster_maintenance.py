"""Cluster and maintenance calls against both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndic.client import Client, ClientError, NotFoundError
from tests.server.cluster_util import free_port
from tests.stores import Store


async def test_member_list_add_promote_remove(store: Store) -> None:
    async with Client(store.endpoints) as client:
        listed = await client.member_list()
        assert len(listed.members) == 1
        assert listed.members[0].client_urls == [f"http://{store.endpoints[0]}"]
        assert listed.member_id == listed.members[0].id
        peer = f"http://127.0.0.1:{free_port()}"
        added = await client.member_add([peer], is_learner=True)
        try:
            assert added.member.peer_urls == [peer] and added.member.is_learner
            assert len(added.members) == 2
            # A learner that never started cannot be in sync with the leader.
            with pytest.raises(ClientError, match="learner"):
                await client.member_promote(added.member.id)
        finally:
            remaining = await client.member_remove(added.member.id)
        assert [m.id for m in remaining] == [listed.member_id]
        with pytest.raises(NotFoundError, match="etcdserver: member not found"):
            await client.member_remove(added.member.id)


async def test_status_alarms_defragment_hash(store: Store, key_prefix: bytes) -> None:
    async with Client(store.endpoints) as client:
        revision = (await client.put(key_prefix + b"k", b"v")).revision
        status = await client.status(store.endpoints[0])
        assert status.version.startswith("3.")
        assert status.leader == status.member_id
        assert status.raft_index >= status.raft_applied_index > 0
        assert status.db_size_bytes > 0 and status.revision >= revision
        assert await client.alarms() == []
        await client.defragment(store.endpoints[0])
        first = await client.hash_kv(revision)
        again = await client.hash_kv(revision, endpoint=store.endpoints[0])
        assert first.hash == again.hash and first.member_id == status.member_id
        await client.put(key_prefix + b"k", b"changed")
        assert (await client.hash_kv()).hash != first.hash


async def test_snapshot_download(store: Store, key_prefix: bytes, tmp_path: Path) -> None:
    async with Client(store.endpoints) as client:
        await client.put(key_prefix + b"k", b"in the snapshot")
        path = tmp_path / "db.snapshot"
        size = await client.snapshot(path)
        data = path.read_bytes()
        assert size == len(data) > 0
        assert b"in the snapshot" in data
        assert not (tmp_path / "db.snapshot.part").exists()

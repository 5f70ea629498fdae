"""The request-head cache: a block is parsed once per connection while the
HPACK table stays the same, and never answered from the cache once it changed."""

from __future__ import annotations

import hpack
import pytest
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from syndic.server.h2.frames import ProtocolError
from syndic.server.h2.headers import RequestHeadDecoder, leaves_table_unchanged

LIST_BYTES_MAX = 64 * 1024
BASE = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:2379"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


def nghttp2_style(path: bytes, length: int) -> list[HeaderTuple]:
    """The head h2load sends: ``:path`` and ``content-length`` never indexed."""
    return [
        *(HeaderTuple(n, v) for n, v in BASE),
        NeverIndexedHeaderTuple(b":path", path),
        NeverIndexedHeaderTuple(b"content-length", str(length).encode()),
    ]


def test_indexed_and_non_indexing_literals_leave_the_table_unchanged() -> None:
    encoder = hpack.Encoder()
    first = encoder.encode(nghttp2_style(b"/etcdserverpb.KV/Put", 270))
    again = encoder.encode(nghttp2_style(b"/etcdserverpb.KV/Put", 270))
    assert not leaves_table_unchanged(first)  # indexes :authority and friends
    assert leaves_table_unchanged(again)  # references and never-indexed literals
    assert again == encoder.encode(nghttp2_style(b"/etcdserverpb.KV/Put", 270))
    # A literal without indexing (0000xxxx), with a literal name and a long value.
    assert leaves_table_unchanged(b"\x00\x03abc\x7f\x81\x01" + b"x" * 256)


@pytest.mark.parametrize(
    "block",
    [
        b"\x40\x03abc\x01x",  # literal with incremental indexing (§6.2.1)
        b"\x3f\xe1\x1f",  # dynamic table size update (§6.3)
        b"\x82\x00\x03ab",  # a name cut short
        b"\x82\x0f",  # an index cut short
        b"\x00\x03abc\x7f\x81",  # a length cut short
        b"\x00\x03abc\x05xy",  # a value cut short
    ],
)
def test_blocks_that_change_the_table_or_are_cut_short_are_not_neutral(block: bytes) -> None:
    assert not leaves_table_unchanged(block)


def test_the_same_bytes_after_the_table_changed_decode_afresh() -> None:
    """A reference to dynamic entry 62 names another header once an entry is
    inserted in front of it: the cached head must not be returned."""
    encoder = hpack.Encoder()
    cached = RequestHeadDecoder(LIST_BYTES_MAX)
    oracle = hpack.Decoder(max_header_list_size=LIST_BYTES_MAX)

    def both(block: bytes) -> tuple[str, str]:
        expected = dict(oracle.decode(block, raw=True))[b":path"].decode()
        return cached.decode(block).path, expected

    assert both(encoder.encode([*BASE, (b":path", b"/a.S/One")])) == ("/a.S/One",) * 2
    referencing = encoder.encode([*BASE, (b":path", b"/a.S/One")])
    assert leaves_table_unchanged(referencing)
    assert both(referencing) == ("/a.S/One",) * 2
    assert both(referencing) == ("/a.S/One",) * 2  # from the cache
    # The client inserts a new :path: entry 62 is now "/b.S/Two".
    assert both(encoder.encode([*BASE, (b":path", b"/b.S/Two")])) == ("/b.S/Two",) * 2
    path, expected = both(referencing)
    assert path == expected != "/a.S/One"


def test_a_broken_block_is_an_error_even_after_cached_ones() -> None:
    decoder = RequestHeadDecoder(LIST_BYTES_MAX)
    encoder = hpack.Encoder()
    decoder.decode(encoder.encode(nghttp2_style(b"/a.S/M", 5)))
    decoder.decode(encoder.encode(nghttp2_style(b"/a.S/M", 5)))
    with pytest.raises(ProtocolError, match="COMPRESSION_ERROR"):
        decoder.decode(b"\xff\xff\xff\xff\x0f")  # an index far past the table


HEADS = st.lists(
    st.tuples(
        st.sampled_from([b"/etcdserverpb.KV/Put", b"/etcdserverpb.KV/Range", b"/a.S/M"]),
        st.sampled_from([b"", b"1S", b"250m", b"99999999n"]),
        st.sampled_from([b"", b"tenant-a", b"tenant-b" * 40]),
        st.booleans(),  # never index the varying headers (nghttp2) or index them (Go)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(heads=HEADS, table_size=st.sampled_from([4096, 256, 64]))
def test_the_cache_agrees_with_a_fresh_hpack_decoder(
    heads: list[tuple[bytes, bytes, bytes, bool]], table_size: int
) -> None:
    """Whatever the client indexes and evicts, cached heads equal decoded ones."""
    encoder = hpack.Encoder()
    encoder.header_table_size = table_size
    cached = RequestHeadDecoder(LIST_BYTES_MAX)
    oracle = hpack.Decoder(max_header_list_size=LIST_BYTES_MAX)
    for path, timeout, tenant, never in heads:
        wrap = NeverIndexedHeaderTuple if never else HeaderTuple
        fields = [*(HeaderTuple(n, v) for n, v in BASE), wrap(b":path", path)]
        if timeout:
            fields.append(wrap(b"grpc-timeout", timeout))
        if tenant:
            fields.append(wrap(b"tenant", tenant))
        block = encoder.encode(fields)
        head = cached.decode(block)
        expected = dict(oracle.decode(block, raw=True))
        assert head.path == expected[b":path"].decode()
        assert dict(head.metadata).get("tenant") == (tenant.decode() if tenant else None)
        assert (head.timeout_s is None) == (not timeout)

"""Partial-send bookkeeping and the count of bytes held for unread responses."""

from __future__ import annotations

from corral.worker.outbuf import Buffer, Pending, drop_sent


def joined(bufs: list[Buffer]) -> bytes:
    return b"".join(bytes(b) for b in bufs)


def test_drop_sent_at_every_split_keeps_the_unsent_tail() -> None:
    bufs: list[Buffer] = [b"head", b"", b"body-one", b"x"]
    whole = joined(bufs)
    for sent in range(len(whole) + 1):
        assert joined(drop_sent(list(bufs), sent)) == whole[sent:]


def test_drop_sent_views_the_apps_buffer_without_copying() -> None:
    big = b"b" * 1000
    rest = drop_sent([b"head", big], 10)
    assert len(rest) == 1 and isinstance(rest[0], memoryview) and rest[0].obj is big


def test_pending_counts_a_shared_buffer_once() -> None:
    pending = Pending()
    shared = b"s" * 1000
    held = [pending.hold([b"h1", shared]), pending.hold(memoryview(shared)[10:])]
    assert pending.total == 2 + 1000  # the head, and the shared body once
    own = pending.hold([b"o" * 50])
    assert pending.total == 1052
    for bases in [*held, own]:
        pending.release(bases)
    assert pending.total == 0


def test_pending_keeps_counting_until_the_last_holder_releases() -> None:
    pending = Pending()
    shared = b"s" * 100
    first, second = pending.hold(shared), pending.hold([shared])
    pending.release(first)
    assert pending.total == 100
    pending.release(second)
    assert pending.total == 0

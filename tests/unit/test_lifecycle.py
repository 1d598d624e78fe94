"""The cross-process vocabulary: zygote pipe encoding, the lifecycle table, recycle counting."""

from __future__ import annotations

import pytest

from corral import lifecycle
from corral.lifecycle import (
    MAX_LINE,
    ExitReason,
    Failed,
    Lifecycle,
    Loaded,
    RecycleReason,
    Spawn,
    Spawned,
    TransitionError,
    ZygoteMessage,
    check_transition,
    decode,
    encode,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("msg", "wire"),
    [
        (Spawn(7, 3), b"spawn 7 3\n"),
        (Spawned(7, 41234), b"spawned 7 41234\n"),
        (Loaded("gc=auto, 12 objects frozen"), b"loaded gc=auto, 12 objects frozen\n"),
        (Failed("cannot import 'app'"), b"failed cannot import 'app'\n"),
    ],
)
def test_each_message_has_the_wire_form_and_round_trips(msg: ZygoteMessage, wire: bytes) -> None:
    assert encode(msg) == wire
    assert decode(wire[:-1]) == msg


def test_text_is_kept_to_one_atomic_line() -> None:
    wire = encode(Failed("Traceback\n  line 1\n" + "x" * 2000))
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    assert len(wire) <= MAX_LINE <= 512  # PIPE_BUF is at least 512 (POSIX)
    assert decode(wire[:-1]) == Failed(("Traceback   line 1 " + "x" * 2000)[: MAX_LINE - 8])


@pytest.mark.parametrize(
    "line",
    [b"", b"spawn", b"spawn 1", b"spawn one 2", b"spawned 1 2 3", b"hello 1 2", b"spawn -1 2"],
)
def test_malformed_lines_decode_to_none(line: bytes) -> None:
    assert decode(line) is None


def test_the_lifecycle_table_is_the_diagram() -> None:
    assert check_transition(Lifecycle.BOOTING, Lifecycle.READY) is Lifecycle.READY
    assert check_transition(Lifecycle.RETIRING, Lifecycle.READY) is Lifecycle.READY
    assert check_transition(Lifecycle.STOPPING, Lifecycle.STOPPING) is Lifecycle.STOPPING
    for state in Lifecycle:
        if state is not Lifecycle.GONE:
            assert Lifecycle.GONE in lifecycle.TRANSITIONS[state]  # a process can always die
    with pytest.raises(TransitionError):
        check_transition(Lifecycle.STOPPING, Lifecycle.READY)
    with pytest.raises(TransitionError):
        check_transition(Lifecycle.BOOTING, Lifecycle.RETIRING)
    with pytest.raises(TransitionError):
        check_transition(Lifecycle.GONE, Lifecycle.BOOTING)
    for state in Lifecycle:
        assert state.upper() in lifecycle.__doc__.upper()  # the diagram names every stage


def test_every_exit_reason_maps_and_a_shutdown_is_no_recycle() -> None:
    for reason in ExitReason:
        counted = lifecycle.recycle_reason(reason)
        assert counted is None or counted in RecycleReason
    assert lifecycle.recycle_reason(ExitReason.SHUTDOWN) is None
    assert lifecycle.recycle_reason(ExitReason.OOM) is RecycleReason.CRASH
    assert lifecycle.recycle_reason(ExitReason.SCALE_DOWN) is RecycleReason.SCALE_DOWN


def test_the_wire_strings_are_the_old_ones() -> None:
    assert [r.value for r in RecycleReason] == [
        "crash",
        "timeout",
        "max-requests",
        "memory",
        "reload",
        "scale-down",
    ]
    assert f"{ExitReason.OOM}" == "oom?" and str(ExitReason.RELOAD_FAILED) == "reload-failed"

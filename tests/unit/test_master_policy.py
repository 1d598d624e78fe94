"""Pure supervision rules: backoff, exit decoding, stuck detection, scale-down choice."""

from __future__ import annotations

import os
import signal

from corral.master import policy
from corral.master.listeners import parse_address


def test_backoff_doubles_and_caps() -> None:
    delays = [policy.respawn_delay(n) for n in range(0, 10)]
    assert delays[0] == 0.0
    assert delays[1] == policy.BACKOFF_BASE_S
    assert delays[2] == 2 * policy.BACKOFF_BASE_S
    assert max(delays) == policy.BACKOFF_MAX_S
    assert delays == sorted(delays)


def test_healthy_deaths_do_not_back_off_but_boot_loops_do() -> None:
    assert policy.crash_streak(3, was_ready=True, lived_s=5.0) == 0
    assert policy.respawn_delay(policy.crash_streak(0, was_ready=True, lived_s=5.0)) == 0.0
    streak = 0
    for _ in range(4):  # dies while booting, again and again
        streak = policy.crash_streak(streak, was_ready=False, lived_s=0.2)
    assert streak == 4 and policy.respawn_delay(streak) > 0.5
    assert policy.crash_streak(0, was_ready=True, lived_s=0.3) == 1  # dies right after ready


def test_decode_exit_code_and_signal() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    info = policy.decode_status(status)
    assert (info.code, info.signum) == (3, None)
    assert info.describe() == "exited with code 3"
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    info = policy.decode_status(status)
    assert info.signum == signal.SIGKILL
    assert policy.exit_reason(info, asked_to_stop=False, timed_out=False) == "oom?"
    assert policy.exit_reason(info, asked_to_stop=False, timed_out=True) == "timeout"
    assert policy.exit_reason(info, asked_to_stop=True, timed_out=False) == "stopped"


def test_stuck_needs_a_stale_heartbeat() -> None:
    assert not policy.is_stuck(0.0, 100.0, 30.0)  # never beat: booting, not stuck
    assert not policy.is_stuck(80.0, 100.0, 30.0)
    assert policy.is_stuck(60.0, 100.0, 30.0)


def test_scale_down_picks_newest() -> None:
    assert policy.pick_scale_down([(1, 5.0), (2, 9.0), (3, 7.0)]) == 2
    assert policy.pick_scale_down([]) is None


def test_parse_addresses() -> None:
    assert parse_address("127.0.0.1:0").port == 0
    assert parse_address("[::1]:80").host == "::1"
    assert parse_address(":8000").host == "0.0.0.0"
    assert parse_address("unix:/tmp/s").path == "/tmp/s"

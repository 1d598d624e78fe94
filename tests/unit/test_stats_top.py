"""Pure parts of the stats front ends: address policy, `corral top` URL and frame rendering."""

from __future__ import annotations

import pytest
from rich.console import Console

from corral.stats.exposition import snapshot_dict
from corral.stats.fleet import Fleet
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import Scoreboard
from corral.stats.server import check_stats_address
from corral.stats.top import frame, stats_url


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_allowed(host: str) -> None:
    check_stats_address(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", ""])
def test_other_addresses_need_an_explicit_opt_in(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        check_stats_address(host, allow_remote=False)
    check_stats_address(host, allow_remote=True)


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("127.0.0.1:9100", "http://127.0.0.1:9100/stats"),
        (":9100", "http://127.0.0.1:9100/stats"),
        ("9100", "http://127.0.0.1:9100/stats"),
        ("http://[::1]:9100/", "http://[::1]:9100/stats"),
        ("http://127.0.0.1:9100/stats", "http://127.0.0.1:9100/stats"),
    ],
)
def test_stats_url(address: str, url: str) -> None:
    assert stats_url(address) == url


def test_frame_shows_every_worker_and_totals() -> None:
    board = Scoreboard.create(2)
    fleet = Fleet(board, now=0.0)
    for i, pid in enumerate((4242, 4343)):
        board.reset(i, pid, i, 0, 0.0)
        w = board.writer(i, claim_pid=False)
        w.set_state(WorkerState.READY)
        w.start_request(0.0, b"GET", b"/")
        w.finish_request(0.0, 200, 0.001, 1, 1)
        w.flush()
    fleet.set_memory(4242, {"rss": 50 * 2**20, "uss": 5 * 2**20, "shared": 45 * 2**20})
    doc = snapshot_dict(fleet.snapshot(1.0))
    board.close()
    console = Console(width=160, record=True, color_system=None)
    console.print(frame(doc, "http://127.0.0.1:1/stats"))
    text = console.export_text()
    assert "4242" in text and "4343" in text and "all" in text
    assert "50.0 MiB" in text and "90%" in text

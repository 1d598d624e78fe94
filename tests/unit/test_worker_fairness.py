"""The worker's accept rules (corral.worker.fairness) and the scoreboard census they read."""

from __future__ import annotations

import select
import socket

from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import Scoreboard
from corral.worker.fairness import HOLD_S, SLACK, FairAccept


def test_census_counts_ready_workers_and_their_connections() -> None:
    board = Scoreboard.create(6)
    for index, (state, conns) in enumerate(
        [(WorkerState.READY, 5), (WorkerState.READY, 3), (WorkerState.DRAINING, 40)]
    ):
        board.reset(index, 100 + index, index, 1, 0.0)
        slot = board.writer(index, claim_pid=False)
        slot.set_state(state)
        slot.set_connections(conns)
    assert board.census() == (2, 8)  # the draining worker accepts nothing: not counted


def test_over_the_share_plus_slack_only() -> None:
    census = (2, 10)
    fair = FairAccept(lambda: census)
    assert not fair.over(5 + SLACK)  # average 5
    assert fair.over(5 + SLACK + 1)
    census = (1, 50)
    assert not fair.over(50)  # alone: never holds back
    assert not FairAccept(None).over(10**6)


def test_after_accept_holds_back_or_requeues_and_resumes() -> None:
    census = (2, 20)
    fair = FairAccept(lambda: census)
    ep = select.epoll()
    with socket.socket() as lsock, ep:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        ep.register(lsock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        assert not fair.after_accept(ep, lsock.fileno(), 10, now=1.0)  # re-registered
        assert fair.until == 0.0
        assert fair.after_accept(ep, lsock.fileno(), 15, now=1.0)  # over: hold back
        assert fair.until == 1.0 + HOLD_S
        assert not fair.may_resume(15, now=1.0)
        assert fair.may_resume(15, now=1.0 + HOLD_S)  # never longer than HOLD_S
        assert fair.until == 0.0
        fair.until = 5.0
        census = (2, 30)
        assert fair.may_resume(15, now=2.0)  # the others caught up

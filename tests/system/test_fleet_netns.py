"""The fleet drill "a host cut off" (issue 13): one host's network is cut, not its processes.

Two corral hosts on loopback (127.0.0.2-3) and a third inside a network namespace this test
creates, reached over a veth pair: ``198.18.x.1`` on the root side (where HAProxy and nginx
run), ``198.18.x.2`` inside (198.18.0.0/15 is the RFC 2544 benchmarking range, never a real
network; ``x`` comes from the pid so two runs never share a subnet). Under the same POST load
as tests/system/test_fleet.py (whose hosts, balancers and load this reuses), the namespace end
of the veth is set down: the host's NIC dies. Nothing tells the balancers — no FIN, no RST,
no ICMP — packets to the host vanish, requests inside it hang, new connects time out. The
drill ends once both balancers have noticed (HAProxy's health check calls the host DOWN;
nginx logs a timeout for it), the link comes back, the host is UP again.

Bound: the requests that were inside the host when its link went down (at most the load's
concurrency per balancer). HAProxy replays them elsewhere after ``timeout server``
(``retry-on response-timeout``), so it loses none in practice; nginx answers them 504 after
``proxy_read_timeout`` (a POST already sent is not replayed). New connects time out after
``proxy_connect_timeout`` / ``timeout connect`` and are retried on another host, since
nothing was sent.

Namespaces: the test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), ``ip`` (iproute2, from
scripts/install-system-deps) and a kernel with network namespaces and veth. A missing ``ip``
or any other failure to set up fails under CI; only a kernel or container that forbids it
(``Operation not permitted``, ``Unknown device type``, no /proc/self/ns/net) skips, under CI
too, with the reason in the skip message: that machine cannot run the drill at all. The
namespace and the veth are removed in ``finally`` (deleting the namespace once its processes
are gone destroys the veth pair with it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from test_fleet import (
    CONNS,
    HAPROXY,
    NGINX,
    Fleet,
    HAProxy,
    Host,
    Nginx,
    _answers,
    _drill,
    _need,
    start_hosts,
)

from harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FORBIDDEN = ("Operation not permitted", "Unknown device type", "not supported")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _subnet() -> str:
    """A /30 of 198.18.0.0/15 chosen by pid: ``198.18.X.Y`` with Y the network address."""
    block = os.getpid() % 32768
    return f"198.{18 + block // 16384}.{(block // 64) % 256}.{(block % 64) * 4}"


@dataclass
class NetNS:
    """A network namespace with one veth pair into it; ``link`` cuts and restores it."""

    name: str
    outer: str  # the root namespace's end
    inner: str  # the namespace's end: the host's NIC
    outer_addr: str
    inner_addr: str

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner,
            "netns", self.name)  # fmt: skip
        _ip("addr", "add", f"{self.outer_addr}/30", "dev", self.outer)
        _ip("link", "set", self.outer, "up")
        _ip("-n", self.name, "addr", "add", f"{self.inner_addr}/30", "dev", self.inner)
        _ip("-n", self.name, "link", "set", self.inner, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def link(self, up: bool) -> None:
        _ip("-n", self.name, "link", "set", self.inner, "up" if up else "down")

    def remove(self) -> None:
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.outer, check=False)  # gone with the namespace, normally


def _namespace() -> NetNS:
    """A fresh NetNS, created; skip only when the kernel forbids it, fail otherwise (CI)."""
    tag = os.getpid() % 100000
    net = _subnet().rsplit(".", 1)
    base = int(net[1])
    ns = NetNS(f"corral-cut-{tag}", f"ccut{tag}o", f"ccut{tag}i",
               f"{net[0]}.{base + 1}", f"{net[0]}.{base + 2}")  # fmt: skip
    ci = bool(os.environ.get("CI"))
    if shutil.which("ip") is None:
        if ci:
            pytest.fail("ip (iproute2) is missing: scripts/install-system-deps installs it")
        pytest.skip("ip (iproute2) is not installed")
    if not os.path.exists("/proc/self/ns/net"):
        pytest.skip("this kernel has no network namespaces (no /proc/self/ns/net)")
    try:
        ns.create()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        ns.remove()
        if any(word in str(exc) for word in FORBIDDEN):
            pytest.skip(f"the kernel or container forbids namespaces/veth: {exc}")
        if ci:
            pytest.fail(f"could not set up the namespace: {exc}")
        pytest.skip(f"could not set up the namespace: {exc}")
    return ns


@pytest.fixture(scope="module")
def cut_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, NetNS]]:
    _need(HAPROXY)
    _need(NGINX)
    ns = _namespace()
    tmp = tmp_path_factory.mktemp("fleet-netns")
    hosts = [Host("127.0.0.2", tmp), Host("127.0.0.3", tmp), Host(ns.inner_addr, tmp, ns.name)]
    balancers: list[HAProxy | Nginx] = []
    try:
        start_hosts(hosts)
        balancers.append(HAProxy(tmp, hosts))
        balancers.append(Nginx(tmp, hosts))
        fleet = Fleet(hosts, balancers[0], balancers[1])  # type: ignore[arg-type]
        fleet.healthy()
        yield fleet, ns
    finally:
        for thing in reversed(balancers):
            thing.stop()
        for host in hosts:
            host.stop()  # before the namespace goes: its processes would keep it alive
        ns.remove()
    assert ns.name not in _ip("netns", "list").stdout


def _nginx_gave_up(nginx: Nginx, addr: str, before: int) -> bool:
    """nginx logged a timeout (read or connect) for ``addr`` since log offset ``before``."""
    new = nginx.error_log()[before:]
    return any("timed out" in line and addr in line for line in new.splitlines())


def test_a_host_cut_off_fails_at_most_its_in_flight(cut_fleet: tuple[Fleet, NetNS]) -> None:
    fleet, ns = cut_fleet
    victim = fleet.hosts[2]
    assert victim.netns == ns.name and victim.addr == ns.inner_addr
    bounds = {"haproxy": CONNS, "nginx": CONNS}
    with _drill(fleet, "a host cut off (namespace link down)", bounds) as load:
        log_at = len(fleet.nginx.error_log())
        ns.link(False)
        try:
            fleet.haproxy.wait_up(2, timeout=30)  # health checks time out: DOWN
            wait_for(lambda: _nginx_gave_up(fleet.nginx, victim.addr, log_at), 30)
            load.wait_ok(20)  # the two others carry the load meanwhile
        finally:
            ns.link(True)
        fleet.haproxy.wait_up(3, timeout=30)
        load.wait_ok(20)
    assert victim.launched is not None and victim.launched.proc.poll() is None, victim.log()


def test_the_cut_host_served_through_the_veth(cut_fleet: tuple[Fleet, NetNS]) -> None:
    """The fixture is what it claims: the third host listens only inside its namespace (the
    root namespace has no socket on its address) and answers the balancers over the veth."""
    fleet, ns = cut_fleet
    victim = fleet.hosts[2]
    inside = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-Hltn"],
                            capture_output=True, text=True, timeout=20)  # fmt: skip
    outside = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, timeout=20)
    listen = f"{victim.addr}:{victim.port}"
    assert listen in inside.stdout, inside.stdout + inside.stderr
    assert listen not in outside.stdout
    assert _answers(victim.addr, victim.port)  # from the root namespace, over the veth
    fleet.healthy()  # and HAProxy's health checks reach it the same way

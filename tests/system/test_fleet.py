"""Fleet drills (issue 13): three corral hosts on 127.0.0.2-4, HAProxy and nginx in front of them
with the configurations of docs/fleet.md (read out of the page), a bounded POST load through
both balancers at once, and the faults of a real fleet, each with its bound on failed requests.

HAProxy and nginx are system packages (scripts/install-system-deps): missing, the drills skip,
and fail under CI. ``FLEET_RESULTS=path.json`` appends each drill's counts there (the table in
benchmarks/RESULTS.md is made from it)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.launch import Launched, corral_serve, spawn
from harness import APPS, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DOC = Path(__file__).parents[2] / "docs" / "fleet.md"
HAPROXY, NGINX = "/usr/sbin/haproxy", "/usr/sbin/nginx"
ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
WORKERS = "2"  # the doc says 4; a 2-core test machine runs three hosts
CONNS = 4  # load connections per balancer: at most this many requests in flight through it
BODY = b"x" * 2048


def _block(lang: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"one ```{lang} block in {DOC}"
    return str(blocks[0])


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _need(program: str) -> None:
    if not os.access(program, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing (scripts/install-system-deps installs it)")
        pytest.skip(f"{program} is not installed")


# ---------------------------------------------------------------- the hosts


class Host:
    """One corral host: the doc's command line on its own loopback address and port."""

    def __init__(self, addr: str, tmp: Path) -> None:
        self.addr, self.port, self.tmp = addr, _free_port(addr), tmp
        self.version_file = tmp / f"version-{addr}"
        self.version_file.write_text("v1")
        self.slow_file = tmp / f"slow-{addr}"
        self.launched: Launched | None = None
        words = shlex.split(_block("sh"))
        assert words[:3] == ["corral", "serve", "app:application"], words
        args = words[3:]
        args[args.index("-b") + 1] = f"{addr}:{self.port}"
        args[args.index("-w") + 1] = WORKERS
        self.args = ["fleetapp:app", *args]

    def start(self) -> None:
        env = {
            "PYTHONPATH": str(APPS),
            "FLEET_VERSION_FILE": str(self.version_file),
            "FLEET_SLOW_FILE": str(self.slow_file),
        }
        log = self.tmp / f"corral-{self.addr}.log"
        self.launched = spawn(corral_serve(*self.args), log_path=log, env=env, cwd=self.tmp)
        self.launched.wait_ready(60)

    @property
    def pid(self) -> int:
        assert self.launched is not None
        return self.launched.pid

    def log(self) -> str:
        return self.launched.log() if self.launched else ""

    def stop(self) -> None:
        if self.launched is not None:
            self.launched.stop()

    def term_and_wait(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        assert self.launched is not None
        assert self.launched.proc.wait(timeout=60) == 0, self.log()

    def kill(self, sig: int) -> None:
        os.killpg(self.pid, sig)  # the whole host: master, zygote, workers


# ---------------------------------------------------------------- the balancers


class HAProxy:
    def __init__(self, tmp: Path, hosts: list[Host]) -> None:
        self.port, self.sock = _free_port("127.0.0.1"), tmp / "haproxy.sock"
        cfg = _block("haproxy")
        cfg = cfg.replace("/run/haproxy/admin.sock", str(self.sock))
        cfg = cfg.replace("bind :80", f"bind 127.0.0.1:{self.port}")
        for i, host in enumerate(hosts, 1):
            cfg, n = re.subn(rf"server web{i} \S+", f"server web{i} {host.addr}:{host.port}", cfg)
            assert n == 1, f"server web{i} in the doc's HAProxy config"
        self.cfg, self.log_path = tmp / "haproxy.cfg", tmp / "haproxy.log"
        self.cfg.write_text(cfg)
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True)
        assert check.returncode == 0, check.stderr.decode()
        self.procs = [self._spawn()]

    def _spawn(self, *extra: str) -> Launched:
        argv = [HAPROXY, "-db", "-f", str(self.cfg), *extra]
        return spawn(argv, log_path=self.log_path, ready_pipe=False)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(line.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def statuses(self) -> dict[str, str]:
        try:
            lines = self.command("show stat").splitlines()
        except OSError:
            return {}
        head = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(head, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"]: r["status"] for r in rows if r["svname"].startswith("web")}

    def wait_up(self, up: int = 3, timeout: float = 30.0) -> None:
        def ready() -> bool:
            return sum(s.startswith("UP") for s in self.statuses().values()) == up

        wait_for(ready, timeout)

    def reload(self) -> None:
        """haproxy -x SOCK -sf OLD: the new process takes the listeners over; the old finishes."""
        old = self.procs[-1]
        new = self._spawn("-x", str(self.sock), "-sf", str(old.pid))
        self.procs.append(new)
        old.proc.wait(timeout=30)
        wait_for(lambda: self.sock.exists(), 10)

    def stop(self) -> None:
        for p in self.procs:
            p.stop(grace_s=5)


class Nginx:
    def __init__(self, tmp: Path, hosts: list[Host]) -> None:
        self.port, self.prefix = _free_port("127.0.0.1"), tmp / "nginx"
        self.prefix.mkdir()
        block = _block("nginx").replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        for i, host in enumerate(hosts, 1):
            block, n = re.subn(
                rf"server 10\.0\.0\.1{i}:8000", f"server {host.addr}:{host.port}", block
            )
            assert n == 1, f"upstream server {i} in the doc's nginx config"
        p = self.prefix
        temps = "\n".join(
            f"    {kind}_temp_path {p}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = (
            f"daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\n"
            f"error_log {p}/error.log info;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n    access_log {p}/access.log;\n{temps}\n{block}\n}}\n"
        )
        self.conf = p / "nginx.conf"
        self.conf.write_text(conf)
        base = [NGINX, "-p", str(p), "-c", str(self.conf)]
        self.base = base
        check = subprocess.run([*base, "-t"], capture_output=True)
        assert check.returncode == 0, check.stderr.decode()
        self.launched = spawn(base, log_path=p / "stderr.log", ready_pipe=False)
        wait_for(lambda: _answers("127.0.0.1", self.port), 20)

    def reload(self) -> None:
        subprocess.run([*self.base, "-s", "reload"], check=True, capture_output=True, timeout=20)

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        self.launched.stop(grace_s=5, term_group=True)


def _answers(host: str, port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=2)
        conn.request("POST", "/", body=b"x")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


# ---------------------------------------------------------------- the load


@dataclass
class Outcomes:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        return self.ok + len(self.failures)


class FleetLoad:
    """CONNS keep-alive clients per balancer, each POSTing 2 KB to the 20 ms endpoint in a
    closed loop: a failure is any answer but 200 with the body length echoed, or an error."""

    def __init__(self, targets: dict[str, int], max_s: float = 90.0) -> None:
        self.results = {name: Outcomes() for name in targets}
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_s
        self.threads = [
            threading.Thread(target=self._run, args=(port, self.results[name]), daemon=True)
            for name, port in targets.items()
            for _ in range(CONNS)
        ]

    def __enter__(self) -> FleetLoad:
        for t in self.threads:
            t.start()
        self.wait_ok(10 * len(self.results))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=20)

    def wait_ok(self, n: int, timeout: float = 30.0) -> None:
        """Bounded wait until every balancer answered ``n`` more requests."""
        want = {name: o.ok + n for name, o in self.results.items()}
        wait_for(lambda: all(o.ok >= want[k] for k, o in self.results.items()), timeout)

    def _run(self, port: int, out: Outcomes) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            conn, error = c, ""
            try:
                c.request("POST", "/work", body=BODY)
                resp = c.getresponse()
                body = resp.read()
                if resp.status != 200 or not body.endswith(b" 2048\n"):
                    error = f"{resp.status} {body[:80]!r}"
                if resp.will_close:
                    c.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                c.close()
                conn = None
            with out.lock:
                if error:
                    out.failures.append(f"{time.monotonic():.3f} {error}")
                else:
                    out.ok += 1
                    out.versions.add(body.split()[0].decode())


# ---------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    hosts: list[Host]
    haproxy: HAProxy
    nginx: Nginx

    def load(self) -> FleetLoad:
        return FleetLoad({"haproxy": self.haproxy.port, "nginx": self.nginx.port})

    def healthy(self) -> None:
        """Every host serving and HAProxy seeing all three up: the start of every drill."""
        for host in self.hosts:
            if host.launched is None or host.launched.proc.poll() is not None:
                host.start()
        self.haproxy.wait_up(3)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _need(HAPROXY)
    _need(NGINX)
    tmp = tmp_path_factory.mktemp("fleet")
    hosts = [Host(addr, tmp) for addr in ADDRS]
    started: list[Host | HAProxy | Nginx] = []
    try:
        threads = [threading.Thread(target=h.start) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        started += hosts
        started.append(HAProxy(tmp, hosts))
        started.append(Nginx(tmp, hosts))
        fl = Fleet(hosts, started[-2], started[-1])  # type: ignore[arg-type]
        fl.healthy()
        yield fl
    finally:
        for thing in reversed(started):
            thing.stop()
        for host in hosts:
            host.stop()


def _report(drill: str, load: FleetLoad) -> dict[str, tuple[int, int]]:
    counts = {name: (len(o.failures), o.total()) for name, o in load.results.items()}
    if path := os.environ.get("FLEET_RESULTS"):
        with open(path, "a") as f:
            samples = {k: o.failures[:5] for k, o in load.results.items()}
            row = {"drill": drill, **{k: list(v) for k, v in counts.items()}, "samples": samples}
            f.write(json.dumps(row) + "\n")
    print(f"\n{drill}: " + ", ".join(f"{k} {f} failed of {t}" for k, (f, t) in counts.items()))
    return counts


def _assert_at_most(load: FleetLoad, bounds: dict[str, int]) -> None:
    for name, bound in bounds.items():
        failures = load.results[name].failures
        assert len(failures) <= bound, (name, len(failures), failures[:10])


# ---------------------------------------------------------------- the drills


def test_rolling_term_and_restart_fails_nothing(fleet: Fleet) -> None:
    fleet.healthy()
    with fleet.load() as load:
        for host in fleet.hosts:
            host.term_and_wait()  # lame duck (HAProxy takes it out), drain, exit 0
            host.start()
            fleet.haproxy.wait_up(3)
            load.wait_ok(10)
    _report("rolling TERM + restart", load)
    _assert_at_most(load, {"haproxy": 0, "nginx": 0})


def test_rolling_hup_with_new_code_fails_nothing(fleet: Fleet) -> None:
    fleet.healthy()
    with fleet.load() as load:
        for host in fleet.hosts:
            host.version_file.write_text("v2")
            done = host.log().count("reload complete")
            os.kill(host.pid, signal.SIGHUP)
            wait_for(lambda h=host, d=done: h.log().count("reload complete") > d, 60)
            load.wait_ok(10)
        for o in load.results.values():
            o.versions.clear()
        load.wait_ok(20)
    _report("rolling HUP with new code", load)
    _assert_at_most(load, {"haproxy": 0, "nginx": 0})
    assert all(o.versions == {"v2"} for o in load.results.values())


def test_sigkill_of_a_host_fails_at_most_its_in_flight(fleet: Fleet) -> None:
    fleet.healthy()
    victim = fleet.hosts[0]
    with fleet.load() as load:
        victim.kill(signal.SIGKILL)
        fleet.haproxy.wait_up(2)
        load.wait_ok(30)
        victim.stop()  # reap
        victim.start()
        fleet.haproxy.wait_up(3)
        load.wait_ok(10)
    _report("SIGKILL of a host", load)
    _assert_at_most(load, {"haproxy": CONNS, "nginx": CONNS})


def test_sigstop_of_a_host_is_bounded_by_the_health_check(fleet: Fleet) -> None:
    fleet.healthy()
    victim = fleet.hosts[1]
    with fleet.load() as load:
        victim.kill(signal.SIGSTOP)
        try:
            fleet.haproxy.wait_up(2)  # the health check noticed: inter x fall + timeout check
            hung_at = time.monotonic()
            load.wait_ok(30)
            time.sleep(max(0.0, 6.0 - (time.monotonic() - hung_at)))  # past the read timeouts
        finally:
            victim.kill(signal.SIGCONT)
        fleet.haproxy.wait_up(3)
        load.wait_ok(10)
    _report("SIGSTOP of a host (6 s)", load)
    _assert_at_most(load, {"haproxy": CONNS, "nginx": 2 * CONNS})


def test_a_slow_host_fails_nothing(fleet: Fleet) -> None:
    fleet.healthy()
    slow = fleet.hosts[2]
    with fleet.load() as load:
        slow.slow_file.write_text("1")
        try:
            load.wait_ok(60)  # least-connections sends the load to the two fast hosts
        finally:
            slow.slow_file.unlink()
        load.wait_ok(10)
    _report("a slow host (1 s per request)", load)
    _assert_at_most(load, {"haproxy": 0, "nginx": 0})


def test_balancer_reloads_fail_nothing(fleet: Fleet) -> None:
    fleet.healthy()
    with fleet.load() as load:
        fleet.haproxy.reload()
        load.wait_ok(10)
        fleet.nginx.reload()
        load.wait_ok(20)
    _report("balancer reload (haproxy -x -sf, nginx -s reload)", load)
    _assert_at_most(load, {"haproxy": 0, "nginx": 0})
    fleet.haproxy.wait_up(3)

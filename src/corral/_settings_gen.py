"""Generated from the settings table in corral/config.py; do not edit. Regenerate with

    corral settings --python > src/corral/_settings_gen.py

(or ``make settings``). One typed attribute per setting, so a misspelled ``cfg.name`` is
a mypy error. ``corral.config.Config`` subclasses ``Settings``; build one with
``config.load``."""

from __future__ import annotations

from dataclasses import dataclass

from corral.choices import (
    AccessLogFormat,
    EventLoop,
    HttpParser,
    Interface,
    Lifespan,
    LogLevel,
    WorkerClass,
)
from corral.http.proxyproto import ProxyMode
from corral.memory.gcpolicy import GcPreset
from corral.memory.recycle import Metric
from corral.tlsconfig import CertReqs


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of corral, in table order; units are in the names."""

    #: WSGI application as module:attr or module:factory(); empty = the built-in demo app.
    app: str
    #: Address to listen on: HOST:PORT, [IPv6]:PORT or unix:PATH. Repeat for several. Port 0
    #: picks a free port (printed when ready).
    bind: list[str]
    #: Number of worker processes; 0 means one per CPU.
    workers: int
    #: Change to this directory before loading the app.
    chdir: str
    #: Comma-separated directories put first on sys.path before the app is loaded (relative
    #: ones after chdir).
    pythonpath: str
    #: Config file: TOML (keys are the setting names), or a gunicorn-style Python file (*.py:
    #: settings and server hooks as module variables).
    config: str
    #: SCRIPT_NAME prefix the app is mounted under (e.g. /api).
    root_path: str
    #: listen() backlog (gunicorn's default).
    backlog: int
    #: Threads per worker running the app (1 = the app runs in the I/O loop's thread, one
    #: request at a time; more suits I/O-bound apps).
    threads: int
    #: gunicorn's worker class: sync and gthread both mean corral's WSGI worker (threads > 1
    #: runs the app on a thread pool); asgi and uvicorn.workers.UvicornWorker its ASGI worker
    #: (interface asgi); others are refused.
    worker_class: WorkerClass
    #: Most open client connections per worker (gunicorn --worker-connections 1000); past it
    #: new connections wait in the listen backlog, except that a waiting client takes the place
    #: of the oldest connection that never sent a byte (as nginx does).
    worker_connections: int
    #: Callable (module:function) run in each worker after fork, before it serves, e.g. to open
    #: per-process connections; if it raises, the worker fails to boot.
    post_fork: str
    #: Accepted for gunicorn's --preload and does nothing: corral always preloads (the zygote
    #: imports the app once per generation).
    preload: bool
    #: Development: when a .py file under the app's directory (chdir) changes, reload as HUP
    #: does (new code in a new generation, no request lost; a broken file leaves the old one
    #: serving). Polls once a second.
    reload: bool
    #: More files --reload watches (templates, config); repeatable.
    reload_extra_files: list[str]
    #: Write the master's pid to this file. During a USR2 upgrade the old master's is renamed
    #: to FILE.oldbin, as gunicorn does.
    pidfile: str
    #: After USR2, the new master sends TERM to the old one as soon as its workers are ready:
    #: one signal upgrades. Off: both serve until you stop the old master yourself (gunicorn's
    #: USR2, then TERM to the pid in PIDFILE.oldbin).
    reexec_stop_old: bool
    #: Run workers as this user (name or uid) after binding; empty = do not switch.
    user: str
    #: Run workers as this group (name or gid) after binding; empty = do not switch.
    group: str
    #: umask for files and unix sockets corral creates, e.g. 0o007 or 007 (octal); -1 = keep
    #: the inherited one.
    umask: int
    #: KEY=VALUE put into the environment before the app is loaded (repeatable).
    env: list[str]
    #: Write 'ready <addresses>' to this inherited fd once every worker serves (for supervisors
    #: and tests).
    ready_fd: int
    #: How the app is called: auto detects ASGI (a coroutine function, or an object whose
    #: __call__ is one; an ASGI 2 class is wrapped) and calls anything else as WSGI.
    interface: Interface
    #: The ASGI worker's event loop: auto takes uvloop when it is installed (uvicorn's --loop).
    loop: EventLoop
    #: ASGI lifespan in each worker after fork (never in the zygote): auto runs it and goes on
    #: without it if the app does not support it; on makes a failed startup a boot failure; off
    #: never sends it (uvicorn's --lifespan).
    lifespan: Lifespan
    #: Largest WebSocket message accepted; a bigger one closes the connection with 1009
    #: (uvicorn's --ws-max-size, 16 MiB).
    ws_max_message_bytes: int
    #: Send a WebSocket ping this often on an open connection (0 = never; uvicorn's 20 s).
    ws_ping_interval_s: float
    #: Close a WebSocket whose peer has not answered a ping within this long (uvicorn's 20 s).
    ws_ping_timeout_s: float
    #: Longest request line in bytes (gunicorn/nginx 8190); longer gets 414.
    limit_request_line: int
    #: Longest header field line in bytes; longer gets 431.
    limit_request_field_size: int
    #: Most header fields in a request (gunicorn 100); more gets 431.
    limit_request_fields: int
    #: Largest request head in bytes; larger gets 431.
    limit_header_section: int
    #: Largest request body in bytes; a larger Content-Length gets 413 before the body is read.
    max_body_size: int
    #: Most bytes of chunk extensions per chunk.
    limit_chunk_extension: int
    #: Seconds a client may take to send a request head (nginx client_header_timeout,
    #: shortened).
    header_timeout_s: float
    #: Seconds an idle keep-alive connection stays open (gunicorn 2 s, nginx 75 s).
    keepalive_timeout_s: float
    #: Seconds a client may stall while sending a body.
    body_timeout_s: float
    #: Seconds a slow reader may stall a response write between progress (nginx send_timeout 60
    #: s, shortened: a worker's connection slots are scarcer).
    send_timeout_s: float
    #: Unread request body bytes a worker reads and discards after the response to keep the
    #: connection alive (nginx discards unread bodies too); a larger rest gets Connection:
    #: close and a lingering close.
    max_drain_body_bytes: int
    #: MiB of response bytes a worker may hold for clients that do not read them; past it the
    #: worker stops accepting and starting new requests until they drain (0 = no limit).
    max_pending_response_mib: int
    #: Request-head parser: native is llhttp and the field split in C (built with corral when a
    #: C compiler is there), python the same llhttp through httptools; both give the same
    #: verdicts. auto takes native when it was built.
    http_parser: HttpParser
    #: Access log format: off, common or combined.
    access_log: AccessLogFormat
    #: A worker whose heartbeat or current request is older than this gets its stack dumped
    #: (SIGABRT) and is replaced (gunicorn --timeout 30).
    timeout_s: float
    #: Seconds a stopping worker may take to finish in-flight requests before it is killed
    #: (gunicorn 30).
    graceful_timeout_s: float
    #: Seconds a new generation (import + workers ready) may take before it counts as failed.
    boot_timeout_s: float
    #: Replace a worker after this many requests (0 = never).
    max_requests: int
    #: Add up to this many requests at random to max_requests per worker so workers do not
    #: restart together.
    max_requests_jitter: int
    #: A worker is not recycled (memory, max-requests) before it has lived this long.
    min_worker_lifetime_s: float
    #: Copy-on-write GC policy: auto, freeze, cpython or instagram (see docs/memory.md).
    gc: GcPreset
    #: Request paths to run through the app in the preloading process before the heap is frozen
    #: (repeatable).
    warmup: list[str]
    #: Run gc.collect() before gc.freeze() (frees garbage but leaves holes every worker then
    #: fills).
    gc_collect_before_freeze: bool
    #: Recycle a worker whose memory (see worker_memory_metric) stays above this many MiB (0 =
    #: off).
    max_worker_memory_mib: float
    #: Which figure max_worker_memory_mib limits: uss (private), pss or rss.
    worker_memory_metric: Metric
    #: A ceiling the kernel enforces (RLIMIT_AS): each worker may map this many MiB more than
    #: it had at fork; past it allocations fail (0 = off; see docs/memory.md).
    worker_memory_hard_limit_mib: float
    #: Count, per request path, the pre-fork heap pages each request writes (userfaultfd write-
    #: protect + PAGEMAP_SCAN, Linux >= 6.7); a diagnostic costing ~5-10 us per page written.
    #: Reports go to $TMPDIR/corral-writes-PID.json while the worker runs (removed at exit; the
    #: final figures are logged).
    track_writes: bool
    #: Seconds between smaps_rollup samples of each worker.
    memory_sample_s: float
    #: Seconds between each worker's pymalloc arena/pool reports (sys._debugmallocstats, ~1 ms
    #: for a 300 MB heap, from the worker's housekeeping tick, never a request), shown on
    #: /stats and the dashboard as 'malloc' (0 = off).
    malloc_stats_s: float
    #: Serve metrics, JSON and the dashboard on HOST:PORT (off when empty; loopback unless
    #: stats_allow_remote).
    stats: str
    #: Allow a non-loopback stats address.
    stats_allow_remote: bool
    #: Extra Host names the stats server answers (repeatable). It always answers its own
    #: address, and localhost names on loopback; any other Host gets 421, so a DNS-rebinding
    #: page cannot read it.
    stats_allowed_hosts: list[str]
    #: Log level: debug, info, warning, error, critical.
    log_level: LogLevel
    #: Where corral's own log goes: a file (appended to) or - for stderr.
    error_log_file: str
    #: Write the access log to this file, or - for stdout; empty = with corral's log. Setting
    #: it turns the access log on (combined format unless access_log says otherwise).
    access_log_file: str
    #: Access log line in gunicorn's atoms, e.g. '%(h)s "%(r)s" %(s)s %(b)s %(D)s'; empty = the
    #: access_log format. Turns the access log on.
    access_log_format: str
    #: Answer this path on the app's own port in the worker loop, without calling the app: 200
    #: while serving, 503 once stopping (e.g. /healthz; empty = off).
    health_path: str
    #: On SIGTERM, health checks turn 503 at once but corral keeps serving and accepting this
    #: long (lame duck) before it stops listening, so balancers take the host out first.
    #: HAProxy: inter x fall + inter; Kubernetes: a few seconds (docs/fleet.md).
    shutdown_delay_s: float
    #: While draining, an idle keep-alive connection is kept this long for one last request
    #: (answered with Connection: close), then closed after checking nothing arrived. Keep it
    #: above the balancer's idle pool timeout (nginx upstream keepalive_timeout).
    drain_idle_s: float
    #: Proxies whose X-Forwarded-Proto/-For/-Host/-Port and Forwarded (RFC 7239) headers set
    #: the scheme, client address and host: IPs or networks (10.0.0.0/8), * for any (gunicorn's
    #: default and meaning; a unix-socket peer is trusted). From other peers the headers are
    #: ignored.
    forwarded_allow_ips: list[str]
    #: PROXY protocol header expected from an allowed proxy (HAProxy send-proxy: v1, send-
    #: proxy-v2: v2; auto: either, or none); it names the real client (REMOTE_ADDR). A
    #: connection from an allowed proxy without a valid header is closed.
    proxy_protocol: ProxyMode
    #: Peers whose PROXY protocol header is read (as forwarded_allow_ips; gunicorn's default).
    #: Other peers speak plain HTTP.
    proxy_allow_ips: list[str]
    #: TLS certificate (PEM, chain included); setting it serves HTTPS on every bind. Read at
    #: start and again on HUP (a new generation).
    certfile: str
    #: TLS private key (PEM); empty when certfile holds the key too.
    keyfile: str
    #: CA certificates (PEM) that client certificates are verified against.
    ca_certs: str
    #: Client certificates: none, optional (verified when sent) or required (needs ca_certs).
    #: gunicorn's 0/1/2 are accepted.
    cert_reqs: CertReqs
    #: OpenSSL cipher list for TLS 1.2 (empty = Python's secure default).
    ciphers: str
    #: Lowest TLS version accepted: a name of ssl.TLSVersion (TLSv1_2, TLSv1_3).
    ssl_min_version: str

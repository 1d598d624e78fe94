"""``corral chaos``: fault scenarios against a real master under steady load, with verdicts.

Theory of operation. One load run (``run_load``, closed loop or ``--rate``) goes on in a
thread for the whole session; the main thread drives *phases* on the load generator's own
clock. The first progress report gives the run's start ``t0`` and every phase boundary is
a whole second after it, so the per-second ``series`` the run returns splits exactly into
phases: second ``s`` belongs to the phase whose ``[start, end)`` holds it. A baseline phase
comes first, then one phase per ``--scenario``. A phase lasts ``--phase-s`` seconds, longer
when its scenario needs time to verify itself (a hung worker is only replaced after the
server's ``--timeout-s``), plus one settling second so late failures land in their phase.

Each scenario acts on the master (signals) or its workers (SIGKILL, SIGSTOP) and states its
own expectation, taken from what corral promises in docs/signals.md:

* ``kill``: a SIGKILLed worker loses the requests on its connections and nothing else, so
  the bound is the number of established connections it held at that instant (its socket
  inodes found ESTABLISHED in /proc/PID/net/tcp, or /stats ``connections`` if larger);
* ``hang``: a SIGSTOPped worker misses heartbeats, is killed after ``--timeout-s`` and
  replaced; bound as for kill, and the stopped pid must be gone and the count restored;
* ``bloat``: one request makes a worker cross ``--max-worker-memory-mib``; a ``memory``
  recycle must follow (spawn before kill), with 0 failures;
* ``reload`` (HUP) and ``scale`` (TTIN, then TTOU): 0 failures, and the workers follow;
* ``slowloris``: N connections trickle a request head; normal load sees 0 failures and a
  p99 within ``--slowloris-p99-factor`` of the baseline's (plus a 50 ms floor for noise).

The server's own view (/stats ``totals`` before and after) is reported next to the client's
and cross-checked: the client's 2xx responses cannot exceed the server's 2xx delta, and the
server's unplanned restarts must cover every kill and hang. ``--sla`` objectives are
evaluated on the whole run (the exit code) and on each phase (reported).

Everything is bounded: the whole session by ``--max-time-s``, every wait by its own
deadline within that. Cleanup always runs: stopped workers get SIGCONT, slowloris sockets
close, the load stops, and a server chaos started is stopped TERM, then KILL its group.

Exit codes: 0 all verdicts pass; 1 a scenario expectation, the SLA or a cross-check failed;
2 bad usage; 3 the target could not be started or reached; 130 interrupted (^C or SIGTERM,
after cleanup).

Modules, each importing only those above it (no cycles)::

    spec       scenario names and arguments, defaults, timeouts, ChaosError   (pure)
    verdicts   phase windows, expectations, bounds, cross-checks               (pure)
    target     the master under test (corral.launch) and /proc
    scenarios  kill, hang, bloat, reload, scale, slowloris
    session    the load thread, the phases, the report's verdicts
    report     text and JSON rendering
    cli        argv, the target's lifetime, exit codes

This package imports nothing at import time: ``corral chaos`` enters through
``corral.chaos.cli.main``.
"""

"""corral.stats: what the workers report and how the master shows it.

Workers write their own slot of a shared-memory scoreboard (``scoreboard``, implementing
``protocol.SlotWriter``; latencies go into the log-bucket ``histogram``); the master reads every
slot, folds retired workers into running totals and computes rates (``fleet``), and renders
them as Prometheus text and JSON (``exposition``) from a small HTTP server inside its selector
loop (``server``) that also serves the dashboard (``assets/``). ``top`` is the terminal client;
``demo`` drives all of it with synthetic traffic. Nothing is imported here so that a worker
importing ``protocol`` pulls in nothing else.
"""

"""corral.master: the supervisor. It never imports the application.

* ``arbiter``: the loop; the only place a worker's fate is decided and applied.
* ``policy``: pure decisions (backoff, exit decoding, stuck, scale-down choice, exit log lines).
* ``monitor``: /proc sampling of workers, returning recycle decisions.
* ``statsglue``: the stats server and fleet aggregate inside the master's loop.
* ``workers``: the records (WorkerRecord, Generation, WorkerTable) and the views helpers read.
* ``zygote``: the process that imports the app once and forks the workers of one generation.
* ``processes``: kill, reap, command a zygote (the seam the tick's unit tests replace).
* ``guard``: the last-resort guard around each periodic step.
* ``listeners``, ``appload``, ``worker_settings``, ``sysdeps``, ``exitcodes``: sockets, app
  import, Config -> WorkerSettings, prctl and process titles, exit codes.
"""

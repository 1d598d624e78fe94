"""``corral experiment``: the Instagram experiment on your own app, as one command and one report.

``traffic`` reads what to send, ``servers`` starts and samples each configuration (a corral GC
preset, or gunicorn ``--preload`` for comparison), ``run`` drives the traffic and collects the
figures, ``verdict`` turns them into a recommendation, ``render`` writes text, JSON and HTML,
``cli`` parses argv. See docs/experiment.md.
"""

"""Running a scenario against a server, sequentially and in parallel, round after round.

    rounds.py  what a run is, whichever runner made it: passes, rounds, the speedup (ScenarioRun)
    steps.py   a scenario of YAML steps (run_both runs any scenario, graphs included)
    graphs.py  a user's graph through the recording proxy (sequential = ``max_concurrency=1``)
    apps.py    a user's app imported with the process's endpoint in its environment (module-level clients)
"""

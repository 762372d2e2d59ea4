"""Everything that imports Locust or gevent: a composition root beside ``cli/``, never imported by the plugin.

Importing Locust runs gevent's ``patch_all``, which would turn pytest's threads, sockets and subprocesses into
gevent's; so the pytest plugin runs ``vramcap load`` in a child process instead (``plugin/load_gate.py``).
This ``__init__`` imports nothing, so the Locust-free modules below (tally, vram_view) load without gevent.

    state.py      a run's state on Locust's Environment (``environment.vramcap``): scenario, server, counts
    users.py      agent-graph users on geventhttpclient, reporting TTFT/TPOT/E2E/GRAPH entries
    graphs.py     a user's own graph under Locust: an asyncio loop as a greenlet, a proxy channel per user (one
                  channel for all, the process's endpoint, for a graph made at module level)
    setup.py      a locustfile's options and events, the server it plans and starts, the end of the run
    run.py        headless runs through Locust's library API (``vramcap load``, ``vramcap capacity``'s shape)
    web.py        the VRAM tab in Locust's web UI and its page (vram_page.html)
    vram_view.py  what the VRAM tab shows (Locust-free): the plan, GPU memory, the server's counters, tokens/s
    tally.py      output tokens and finished graphs of a whole run, across master and workers (Locust-free)
"""

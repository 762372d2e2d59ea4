"""LLM agents as Locust users: each user runs a whole scenario graph (scenarios/*.yaml), streaming.

    locust -f locustfiles/agents.py --host http://127.0.0.1:8080           # any OpenAI-compatible server
    locust -f locustfiles/agents.py --vram-profile 16gb --vramcap-model tiny:Q8_0   # plan and start one

Locust's tables show TTFT, TPOT and E2E per agent and GRAPH per scenario (see
pytest_vramcap.locust.users); the web UI has a VRAM tab (and /vramcap); ``--processes N`` and
``--master`` / ``--worker`` work, the master starting the server. The run's state lives on Locust's
Environment (``environment.vramcap``, pytest_vramcap.locust.state). ``locust -f locustfiles/agents.py --help``
lists the vramcap options.
"""

from pathlib import Path

from locust import events

from pytest_vramcap.defaults import DEFAULT_LOAD_SCENARIO
from pytest_vramcap.locust.setup import AgentUser, install

install(events, default_scenario=Path(__file__).resolve().parents[1] / DEFAULT_LOAD_SCENARIO)

__all__ = ["AgentUser"]

"""The pytest-xdist hand-off: the controller starts the one server, workers attach to it.

Following pytest-xdist's own advice, the controller starts the shared resource
before the workers exist and passes its URL through ``workerinput``; workers
never tear it down (they hold an attached server).
"""

from __future__ import annotations

from typing import Any

import pytest

from ..errors import EngineError
from .console import is_worker
from .runstate import RunState
from .stash import WORKER_URL_KEY

__all__ = ["XdistBridge", "is_xdist_controller", "worker_servers"]


def is_xdist_controller(config: pytest.Config) -> bool:
    return not is_worker(config) and config.getoption("dist", "no") != "no" \
        and bool(config.getoption("numprocesses", None))


def worker_servers(config: pytest.Config) -> dict[str, tuple[str, str | None]] | None:
    """On a worker, each model's server the controller handed over: (URL, the model name requests carry) by
    role; None elsewhere."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    servers = workerinput.get(WORKER_URL_KEY)
    if not isinstance(servers, dict) or not servers:
        return None
    return {str(role): (str(url), None if model is None else str(model)) for role, (url, model) in servers.items()}


class XdistBridge:
    """Registered on an xdist controller only."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # xdist's DSession spawns workers in its own (trylast) sessionstart: start first.
        try:
            self.state.ensure_server()
        except EngineError:
            pass  # reported by every test that needs it, and in the summary

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.state.servers:
            node.workerinput[WORKER_URL_KEY] = {role: [server.url, server.request_model]
                                                for role, server in self.state.servers.items()}

"""Names shared by the plugin's hooks, kept import-free so loading the plugin stays cheap."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["SESSION_KEY", "RESULT_PROPERTY", "WORKER_URL_KEY"]

SESSION_KEY = pytest.StashKey[Any]()
"""config.stash slot of the VramcapSession (present only when --vram-profile enabled the plugin)."""
RESULT_PROPERTY = "vramcap_scenario"
"""user_properties name carrying a scenario result from a worker to the controller."""
WORKER_URL_KEY = "vramcap_server_url"
"""workerinput key with the controller's server URL."""

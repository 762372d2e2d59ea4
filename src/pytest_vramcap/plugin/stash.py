"""Names shared by the plugin's hooks, kept import-free so loading the plugin stays cheap.

The reporter's stash key lives beside the Reporter (as pytest's junitxml.py keeps ``xml_key`` beside LogXML):
only the controller, which has the reporter loaded, reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .runstate import RunState

__all__ = ["LOAD_PROPERTY", "RESULT_PROPERTY", "RUN_STATE_KEY", "WORKER_URL_KEY"]

RUN_STATE_KEY: pytest.StashKey[RunState] = pytest.StashKey()
"""config.stash slot of the run state (present only when --vram-profile enabled the plugin)."""
RESULT_PROPERTY = "vramcap_scenario"
"""user_properties name carrying a scenario result (JSON) from the item to the reporter."""
LOAD_PROPERTY = "vramcap_load"
"""user_properties name carrying a ``vramcap_load`` run (``vramcap load --json`` and the test's id) to the reporter."""
REPORT_ONLY_PROPERTIES = (RESULT_PROPERTY, LOAD_PROPERTY)
"""Whole results for the reporter: kept out of JUnit XML, which gets the key metrics instead."""
WORKER_URL_KEY = "vramcap_server_url"
"""workerinput key with the controller's server URL."""

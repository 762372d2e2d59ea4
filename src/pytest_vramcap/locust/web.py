"""The VRAM tab in Locust's web UI, and its page of memory bars.

Locust's React UI draws extra tabs from ``template_args["extended_tabs"]`` /
``["extended_tables"]`` and fills them from ``extended_stats`` in each ``/stats/requests``
answer (Locust's examples/web_ui_cache_stats.py does the same). Its tables show text, so the
tab's bars are text; ``/vramcap`` is a page of our own with the same data as drawn bars, and
``/vramcap/data`` its JSON. What is shown comes from vram_view.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .tally import LoadTally
from .vram_view import TABLE_STRUCTURE, page_html, table_rows, vram_snapshot

__all__ = ["install_vram_tab"]

TAB_KEY = "vramcap"
_CACHE_S = 1.0
"""A browser polls /stats/requests every 2 s; several browsers share one /metrics and NVML read a second."""


def install_vram_tab(web_ui: Any, *, plan: Callable[[], dict[str, Any] | None], server_url: Callable[[], str | None],
                     tally: Callable[[], LoadTally],
                     emulated: Callable[[], dict[str, Any] | None] = lambda: None) -> None:
    """Add the VRAM tab and the ``/vramcap`` page to Locust's ``web_ui`` (the master's or a local run's)."""
    from flask import Response, request

    cached: dict[str, Any] = {"at": -_CACHE_S, "snapshot": None}

    def snapshot() -> dict[str, Any]:
        now = time.monotonic()
        if now - cached["at"] >= _CACHE_S:
            cached["at"], cached["snapshot"] = now, vram_snapshot(plan(), server_url(), tally(), emulated())
        snapshot_now: dict[str, Any] = cached["snapshot"]
        return snapshot_now

    # Locust's update_template_args() merges its own keys into these, so they stay.
    web_ui.template_args["extended_tabs"] = [{"title": "VRAM", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": TABLE_STRUCTURE}]

    def add_vram_rows(response: Any) -> Any:
        if request.path.endswith("/stats/requests") and response.is_json:
            rows = [{"section": "page", "item": "memory bars", "value": "open /vramcap", "bar": ""},
                    *table_rows(snapshot())]
            response.set_data(json.dumps({**response.json, "extended_stats": [{"key": TAB_KEY, "data": rows}]}))
        return response

    def vram_page() -> Any:
        return Response(page_html(), mimetype="text/html")

    def vram_data() -> Any:
        return Response(json.dumps(snapshot()), mimetype="application/json")

    web_ui.app.after_request(add_vram_rows)
    web_ui.app.add_url_rule("/vramcap", "vramcap_page", web_ui.auth_required_if_enabled(vram_page))
    web_ui.app.add_url_rule("/vramcap/data", "vramcap_data", web_ui.auth_required_if_enabled(vram_data))

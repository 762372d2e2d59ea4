"""What the VRAM tab of Locust's web UI shows: the plan, live GPU memory, the server's counters, tokens/s.

:func:`vram_snapshot` gathers one JSON-able snapshot; :func:`table_rows` turns it into the rows of
Locust's extended table (the "VRAM" tab next to Statistics and Charts, refreshed with every
``/stats/requests`` poll) and :func:`page_html` is a page of its own (``/vramcap``) drawing the same
snapshot as memory bars. The Locust glue is in web.py; this module is free of Locust and
Flask, so tests read it without gevent.

Sources:
* the plan (planner/plan.py's JSON contract), when the locustfile planned and started the server;
* NVML (gpu/nvml.py): memory used on each GPU, when one is present;
* llama-server's ``/metrics`` (it runs with ``--metrics``): requests processing and deferred, the
  longest sequence a slot held (this llama.cpp exports no KV-usage ratio any more, so the tab shows
  the high-water mark against a slot's context), tokens predicted. Ollama and vLLM answer 404 or
  another format: the tab says the counters are unavailable;
* the run's :class:`~.tally.LoadTally`: output tokens per second, over the last 10 s and the run.
"""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from typing import Any

from ..errors import VramcapError
from ..gpu.nvml import memory_in_use
from ..net import fetch
from .tally import LoadTally

__all__ = ["as_emulated", "page_html", "parse_llamacpp_metrics", "table_rows", "vram_snapshot"]

COUNTERS = ("requests_processing", "requests_deferred", "n_tokens_max", "tokens_predicted_total",
            "predicted_tokens_seconds", "n_busy_slots_per_decode")
_TERMS = (("model_mib", "model (weights)"), ("context_mib", "context (KV cache)"), ("compute_mib", "compute buffer"),
          ("overhead_mib", "CUDA overhead"))
_BAR_WIDTH = 24


def parse_llamacpp_metrics(text: str) -> dict[str, float]:
    """The ``llamacpp:*`` samples of a Prometheus text exposition (llama-server's have no labels)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("llamacpp:") and rest:
            try:
                values[name.removeprefix("llamacpp:")] = float(rest.split()[0])
            except ValueError:
                continue
    return values


def server_counters(url: str | None) -> tuple[dict[str, float] | None, str]:
    """llama-server's counters from ``url``/metrics, or None and why not."""
    if not url:
        return None, "no server yet"
    try:
        response = fetch("GET", f"{url.rstrip('/')}/metrics", deadline_s=2.0)
    except VramcapError as exc:
        return None, f"/metrics unreachable: {exc}"
    if response.status_code != 200:
        return None, f"/metrics answered {response.status_code} (llama-server needs --metrics; Ollama has none)"
    counters = parse_llamacpp_metrics(response.text)
    return (counters, "") if counters else (None, "/metrics has no llama.cpp counters")


def gpu_memory() -> tuple[list[dict[str, Any]], str]:
    """Memory in use on each GPU CUDA can see, or no GPU and why (:func:`~pytest_vramcap.gpu.nvml.memory_in_use`)."""
    gpus, why = memory_in_use()
    return [asdict(gpu) for gpu in gpus], why


def as_emulated(gpus: list[dict[str, Any]], emulated: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The GPUs as the run sees them: each a ballast makes look like one of the profile's cards shows that card:
    what is in use of the card's usable MiB. The ballast left exactly that free when it was taken, so whatever else
    held memory then (the ballast's own CUDA context, other processes) is left out with it."""
    if not emulated:
        return gpus
    usable = {card["gpu_uuid"]: card["usable_mib"] for card in emulated["cards"]}
    return [{**gpu, "name": f"{gpu['name']} as {emulated['profile']} (emulated)",
             "used_mib": max(0.0, gpu["used_mib"] - (gpu["total_mib"] - usable[gpu["uuid"]])),
             "total_mib": usable[gpu["uuid"]]}
            if gpu.get("uuid") in usable else gpu for gpu in gpus]


def vram_snapshot(plan: dict[str, Any] | None, server_url: str | None, tally: LoadTally,
                  emulated: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON-able view of the run now; ``plan`` is ``plan_json(plan)`` or None (a server we did not plan);
    ``emulated`` is an :class:`~pytest_vramcap.engines.emulated.EmulatedServer`'s ``emulation()``."""
    counters, server_note = server_counters(server_url)
    gpus, gpu_note = gpu_memory()
    gpus = as_emulated(gpus, emulated)
    rate, overall = tally.rate(), tally.overall_rate()
    return {
        "plan": plan, "gpus": gpus, "gpu_note": gpu_note, "server": counters, "server_note": server_note,
        "load": {"output_tps_10s": round(rate, 1), "output_tps_run": None if overall is None else round(overall, 1),
                 "output_tokens": tally.output_tokens, "requests": tally.requests,
                 "failed_requests": tally.failed_requests, "graphs": tally.graphs, "workers": len(tally.workers)},
    }


def _bar(part: float, whole: float) -> str:
    if whole <= 0:
        return ""
    filled = round(_BAR_WIDTH * min(max(part / whole, 0.0), 1.0))
    return "█" * filled + "░" * (_BAR_WIDTH - filled) + f" {100 * part / whole:.0f}%"


def _row(section: str, item: str, value: str, bar: str = "") -> dict[str, str]:
    return {"section": section, "item": item, "value": value, "bar": bar}


def table_rows(snapshot: dict[str, Any]) -> list[dict[str, str]]:
    """The VRAM tab's rows: section, item, value and a text bar (Locust's tables show text)."""
    rows = []
    plan = snapshot["plan"]
    if plan is not None:
        memory, config = plan["memory"], plan["config"]
        usable = float(memory["usable_mib"])
        for key, label in _TERMS:
            rows.append(_row("plan", label, f"{memory['gpu'][key]:,.0f} MiB", _bar(memory["gpu"][key], usable)))
        rows.append(_row("plan", f"total of {plan['profile']['name']} ({usable:,.0f} MiB usable)",
                         f"{memory['gpu']['total_mib']:,.0f} MiB", _bar(memory["gpu"]["total_mib"], usable)))
        for index, card in enumerate(memory.get("devices", [])):  # several cards: what each holds of its own
            rows.append(_row("plan", f"card {index}: {card['name']} ({card['layers']} layers)",
                             f"{card['total_mib']:,.0f} / {card['usable_mib']:,.0f} MiB",
                             _bar(card["total_mib"], card["usable_mib"])))
        rows.append(_row("plan", "slots x context",
                         f"{config['parallel']} x {config['ctx_per_agent']:,} (KV {config['kv_cache']})"))
        rows.append(_row("plan", "layers on the GPU", f"{config['gpu_layers']}/{config['total_layers']}"))
    else:
        rows.append(_row("plan", "none", "the server was given (--host), not planned"))
    for gpu in snapshot["gpus"]:
        rows.append(_row("GPU", f"{gpu['index']}: {gpu['name']}",
                         f"{gpu['used_mib']:,.0f} / {gpu['total_mib']:,.0f} MiB", _bar(gpu["used_mib"],
                                                                                    gpu["total_mib"])))
    if not snapshot["gpus"]:
        rows.append(_row("GPU", "memory", snapshot["gpu_note"]))
    counters = snapshot["server"]
    if counters is not None:
        slots = plan["config"]["parallel"] if plan else None
        processing = counters.get("requests_processing", 0.0)
        rows.append(_row("server", "requests processing", f"{processing:.0f}" + (f" of {slots} slots" if slots else ""),
                         _bar(processing, slots) if slots else ""))
        rows.append(_row("server", "requests deferred (queued)", f"{counters.get('requests_deferred', 0.0):.0f}"))
        longest = counters.get("n_tokens_max", 0.0)
        ctx = plan["config"]["ctx_per_agent"] if plan else None
        rows.append(_row("server", "longest sequence in a slot (KV high-water mark)",
                         f"{longest:,.0f} tokens" + (f" of {ctx:,}" if ctx else ""), _bar(longest, ctx) if ctx else ""))
        rows.append(_row("server", "tokens predicted", f"{counters.get('tokens_predicted_total', 0.0):,.0f}"))
    else:
        rows.append(_row("server", "counters", snapshot["server_note"]))
    load = snapshot["load"]
    rows.append(_row("load", "output tokens/s (last 10 s)", f"{load['output_tps_10s']:,.1f}"))
    if load["output_tps_run"] is not None:
        rows.append(_row("load", "output tokens/s (whole run)", f"{load['output_tps_run']:,.1f}"))
    rows.append(_row("load", "output tokens / requests / graphs",
                     f"{load['output_tokens']:,} / {load['requests']:,} ({load['failed_requests']} failed) / "
                     f"{load['graphs']:,}"))
    return rows


TABLE_STRUCTURE = [{"key": "section", "title": "Section"}, {"key": "item", "title": "What"},
                   {"key": "value", "title": "Value"}, {"key": "bar", "title": ""}]

def page_html() -> str:
    """The ``/vramcap`` page: plain HTML, CSS and script in one file, no CDN (it fetches ``vramcap/data``)."""
    return (resources.files(__package__) / "vram_page.html").read_text(encoding="utf-8")

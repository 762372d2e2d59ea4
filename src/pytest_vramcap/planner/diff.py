"""Two plans side by side: the question before changing a model, ``num_ctx``, the agents or the KV type.

``vramcap plan --model A --ctx-per-agent 8192 --compare ctx-per-agent=16384`` plans
the config as given ("before") and again with the changes ("after"), then shows
each memory term, the slots and context, the headroom, the decode estimate and
which of the two fits.
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from .output import plan_json
from .plan import Plan

__all__ = ["format_plan_diff", "plan_diff_json"]

_MEMORY_ROWS = (("weights (GPU)", "model_mib"), ("KV cache (GPU)", "context_mib"), ("compute (GPU)", "compute_mib"),
                ("CUDA overhead", "overhead_mib"), ("total at peak", "total_mib"))


def _rows(data: dict[str, Any]) -> dict[str, Any]:
    """The compared quantities of one plan's JSON, by row label (numbers stay numbers for the delta)."""
    config, gpu, throughput = data["config"], data["memory"]["gpu"], data["throughput"]
    rows: dict[str, Any] = {
        "model": data["model"]["name"],
        "profile": f"{data['profile']['name']} ({data['memory']['usable_mib']} MiB usable)",
        "agents (slots)": config["parallel"],
        "context per agent": config["ctx_per_agent"],
        "KV cache": config["kv_cache"],
        "flash attention": "on" if config["flash_attn"] else "off",
        "layers on the GPU": f"{config['gpu_layers']}/{config['total_layers']}",
    }
    rows.update({label: gpu[key] for label, key in _MEMORY_ROWS})
    rows["headroom MiB"] = data["headroom_mib"]
    rows["decode tok/s, all agents"] = throughput["aggregate_tps"]
    rows["decode tok/s per agent"] = throughput["per_agent_tps"]
    rows["fits"] = "FITS" if data["fits"] else "DOES NOT FIT"
    return rows


def plan_diff_json(before: Plan, after: Plan, changes: dict[str, Any]) -> dict[str, Any]:
    """Both plans' JSON (the ``vramcap plan --json`` contract each), what changed, and the numeric deltas."""
    a, b = plan_json(before), plan_json(after)
    rows_a, rows_b = _rows(a), _rows(b)
    delta = {label: round(rows_b[label] - rows_a[label], 2) for label in rows_a
             if isinstance(rows_a[label], (int, float)) and isinstance(rows_b[label], (int, float))}
    return {"changes": changes, "before": a, "after": b, "delta": delta, "fits": {"before": a["fits"],
                                                                                     "after": b["fits"]}}


def _signed(value: float) -> str:
    return f"{value:+,}" if isinstance(value, int) else f"{value:+,.2f}"


def format_plan_diff(before: Plan, after: Plan, changes: dict[str, Any]) -> str:
    data = plan_diff_json(before, after, changes)
    rows_a, rows_b, delta = _rows(data["before"]), _rows(data["after"]), data["delta"]

    def cell(value: Any) -> str:
        return f"{value:,.2f}" if isinstance(value, float) else str(value)

    change = ", ".join(f"{key}={value}" for key, value in changes.items())
    table = tabulate([(label, cell(rows_a[label]), cell(rows_b[label]),
                       _signed(delta[label]) if delta.get(label) else "") for label in rows_a],
                     headers=("", "before", f"after ({change})", "delta"), disable_numparse=True)
    lines = [table, ""]
    for name, plan in (("before", before), ("after", after)):
        verdict = f"fits with {plan.headroom_mib:,.0f} MiB free at peak" if plan.fits else \
            f"does not fit: {plan.breaking_term or 'over budget'}"
        lines.append(f"{name}: {verdict}")
    if before.fits and not after.fits:
        lines.append("the change breaks the plan: `vramcap plan` with the after-options lists what fits instead")
    return "\n".join(lines)

"""A plan as users read it: the JSON contract of ``vramcap plan --json`` and the text table."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from ..defaults import MIB
from .render import llama_server_args, ollama_rendering

if TYPE_CHECKING:
    from .plan import Plan

__all__ = ["format_plan", "plan_json"]


def plan_json(plan: Plan, model_path: str | None = None) -> dict[str, Any]:
    """The plan as the documented JSON object (keys in README "JSON contract")."""
    config, spec, memory = plan.config, plan.spec, plan.memory
    model_ref = model_path or spec.model_ref
    cpu = memory.cpu.mib()
    return {
        "model": {
            "name": spec.name,
            "source": str(spec.source),
            "arch": spec.arch,
            "file_type": spec.file_type,
            "n_layer": spec.n_layer,
            "n_ctx_train": spec.n_ctx_train,
            "weights_mib": round(spec.weights_bytes / MIB, 2),
        },
        "profile": plan.profile.to_dict(),
        "config": {
            "parallel": config.parallel,
            "ctx_per_agent": config.ctx_per_agent,
            "ctx_total": config.ctx_total,
            "kv_cache": config.cache_type_k,
            "flash_attn": config.flash_attn,
            "ubatch": memory.sizing.n_ubatch,
            "gpu_layers": memory.gpu_layers,
            "total_layers": memory.total_layers,
            "n_cpu_moe": config.n_cpu_moe,
            "kv_unified": config.kv_unified,
            "cells_per_agent": memory.sizing.cells_per_stream,
        },
        "memory": {
            "gpu": memory.gpu.mib(),
            "cpu": {key: cpu[key] for key in ("model_mib", "context_mib", "compute_mib")},
            "usable_mib": plan.profile.usable_mib,
            "fit_margin_mib": plan.fit_margin_mib,
        },
        "fits": plan.fits,
        "headroom_mib": plan.headroom_mib,
        "solved_for": plan.solved_for,
        "breaking_term": plan.breaking_term,
        "alternatives": [alternative.to_dict() for alternative in plan.alternatives],
        "throughput": {
            "single_stream_tps": round(plan.decode.single_stream_tps, 1),
            "aggregate_tps": round(plan.decode.aggregate_tps, 1),
            "per_agent_tps": round(plan.decode.per_agent_tps, 1),
            "parallel_speedup": round(plan.decode.parallel_speedup, 2),
        },
        "ollama": ollama_rendering(config, spec, model_ref, fit_margin_mib=plan.fit_margin_mib),
        "llama_server": {"args": llama_server_args(config, model_ref, fit_margin_mib=plan.fit_margin_mib)},
        "notes": list(plan.notes),
    }


def format_plan(plan: Plan) -> str:
    """The plan as ``vramcap plan`` prints it: memory table, verdict, alternatives, engine configs."""
    from tabulate import tabulate

    data = plan_json(plan)
    config, gpu, cpu = data["config"], data["memory"]["gpu"], data["memory"]["cpu"]
    profile = plan.profile
    solved = f"  (solved for {plan.solved_for})" if plan.solved_for else ""
    verdict = "FITS" if plan.fits else "DOES NOT FIT"
    lines = [
        f"model    {plan.spec.name}  [{plan.spec.arch}, {plan.spec.n_layer} layers, "
        f"{data['model']['weights_mib']:.0f} MiB of weights]",
        f"profile  {profile.name}: {profile.usable_mib} MiB usable "
        f"({profile.total_mib} total - {profile.reserved_mib} reserved)",
        f"config   {config['parallel']} agents x {config['ctx_per_agent']} ctx, KV {config['kv_cache']}, "
        f"flash-attn {'on' if config['flash_attn'] else 'off'}, ub {config['ubatch']}, "
        f"{config['gpu_layers']}/{config['total_layers']} layers on GPU{solved}",
        "",
        tabulate(
            [
                ("model (weights)", gpu["model_mib"], cpu["model_mib"]),
                ("context (KV cache)", gpu["context_mib"], cpu["context_mib"]),
                ("compute buffer", gpu["compute_mib"], cpu["compute_mib"]),
                ("CUDA overhead", gpu["overhead_mib"], ""),
                ("total", gpu["total_mib"], ""),
            ],
            headers=("MiB", "GPU", "CPU"),
            floatfmt=".2f",
        ),
        "",
        f"{verdict}: {plan.headroom_mib:.0f} MiB free at peak, llama.cpp --fit keeps {plan.fit_margin_mib} MiB",
    ]
    if plan.breaking_term:
        lines.append(f"breaks on: {plan.breaking_term}")
    throughput = data["throughput"]
    lines.append(
        f"decode   ~{throughput['single_stream_tps']} tok/s single stream, ~{throughput['aggregate_tps']} tok/s "
        f"over {config['parallel']} agents (expected parallel speedup {throughput['parallel_speedup']}x)"
    )
    if plan.alternatives:
        lines += ["", "what would fit instead:", tabulate(
            [(a.label, a.total_mib, "yes" if a.fits else "no", round(a.decode.aggregate_tps, 1))
             for a in plan.alternatives],
            headers=("alternative", "GPU MiB", "fits", "agg tok/s"),
        )]
    ollama = data["ollama"]
    if ollama["refused"]:
        lines += ["", f"ollama: cannot run this plan: {ollama['refused']}"]
    else:
        lines += [
            "",
            f"ollama serve environment (then create {ollama['model']} from the Modelfile and run that model):",
            *(f"  {key}={value}" for key, value in ollama["env"].items()),
        ]
    lines += [
        "llama-server:",
        "  llama-server " + " ".join(shlex.quote(arg) for arg in data["llama_server"]["args"]),
    ]
    lines += ["", *(f"note: {note}" for note in plan.notes)]
    return "\n".join(lines)

"""Human-readable rendering of a :class:`~pytest_vramcap.planner.Plan`."""

from __future__ import annotations

import shlex

from tabulate import tabulate

from .planner import Plan

__all__ = ["format_plan"]


def format_plan(plan: Plan) -> str:
    data = plan.to_dict()
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
    env = data["ollama"]["env"]
    lines += [
        "",
        "ollama serve environment:",
        *(f"  {key}={value}" for key, value in env.items()),
        "llama-server:",
        "  llama-server " + " ".join(shlex.quote(arg) for arg in data["llama_server"]["args"]),
    ]
    lines += ["", *(f"note: {note}" for note in plan.notes)]
    return "\n".join(lines)

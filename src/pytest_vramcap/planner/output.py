"""A plan as users read it: the JSON contract of ``vramcap plan --json`` and the text table."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..defaults import MIB
from .memory import estimate_memory
from .render import llama_server_args, ollama_rendering, ollama_set_env, ollama_set_parallel
from .throughput import H100_SMS

if TYPE_CHECKING:
    from .modelset import PlanSet
    from .plan import Plan

__all__ = ["format_plan", "format_plan_set", "plan_json", "plan_set_json"]


def plan_json(plan: Plan, model_path: str | None = None, role: str | None = None) -> dict[str, Any]:
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
            **({"devices": [{"name": card.name, "layers": layers, "usable_mib": card.usable_mib, **device.mib()}
                            for card, layers, device in zip(plan.profile.devices, memory.layer_split, memory.devices,
                                                            strict=True)]}
               if memory.devices else {}),
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
            **({"prompt_tokens": plan.prefill.prompt_tokens, "prefill_tps": round(plan.prefill.tokens_per_s, 1),
                "prompt_s": round(plan.prefill.seconds, 3)} if plan.prefill is not None else {}),
        },
        "ollama": ollama_rendering(config, spec, model_ref, fit_margin_mib=plan.fit_margin_mib, role=role),
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
        *_device_lines(data["memory"].get("devices")),
        "",
        f"{verdict}: {plan.headroom_mib:.0f} MiB free at peak"
        f"{' on the tightest card' if plan.memory.devices else ''}, llama.cpp --fit keeps {plan.fit_margin_mib} MiB"
        f"{' on each' if plan.memory.devices else ''}",
    ]
    if plan.breaking_term:
        lines.append(f"breaks on: {plan.breaking_term}")
    throughput = data["throughput"]
    lines.append(
        f"decode   ~{throughput['single_stream_tps']} tok/s single stream, ~{throughput['aggregate_tps']} tok/s "
        f"over {config['parallel']} agents (expected parallel speedup {throughput['parallel_speedup']}x)"
    )
    if "prefill_tps" in throughput:
        scaled = "" if profile.sm_count == H100_SMS else " (scaled from the H100 by SM count: likely high here)"
        lines.append(f"prefill  ~{throughput['prefill_tps']:.0f} tok/s: a {throughput['prompt_tokens']:,}-token prompt "
                     f"in ~{throughput['prompt_s']:.2f} s, one agent alone{scaled}")
    elif plan.spec.n_expert:
        lines.append("prefill  not estimated: an MoE's prefill is not modelled (measured on an H100 at 0.5x to 0.8x of "
                     "what the dense terms give, docs/throughput.md)")
    else:
        lines.append("prefill  not estimated: the profile names no card (no SM count); a card's profile "
                     "(rtx4080, ...) or sm_count in a profile file gives one")
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


def _device_lines(devices: list[dict[str, Any]] | None) -> list[str]:
    """Several cards: what each holds (its layer count is its -ts entry)."""
    from tabulate import tabulate

    if not devices:
        return []
    return ["", tabulate([(f"{index}: {device['name']}", device["layers"], device["model_mib"], device["context_mib"],
                           device["compute_mib"], device["overhead_mib"], device["total_mib"], device["usable_mib"])
                          for index, device in enumerate(devices)],
                         headers=("card", "layers", "weights", "KV", "compute", "overhead", "total", "usable"),
                         floatfmt=".0f")]


def _set_device_lines(plans: PlanSet) -> list[str]:
    """Several models on several cards: what each model holds on each card (MiB at peak, its layers)."""
    from tabulate import tabulate

    if not plans.profile.devices:
        return []
    rows = []
    for index, card in enumerate(plans.profile.devices):
        parts = [(plan.memory.devices[index].total / MIB, plan.memory.layer_split[index]) for plan in
                 plans.plans.values()]
        rows.append((f"{index}: {card.name}", *(f"{mib:,.0f} ({layers} layers)" if layers else "-"
                                               for mib, layers in parts),
                     round(sum(mib for mib, _ in parts)), card.usable_mib))
    return ["", tabulate(rows, headers=("card", *plans.roles, "total", "usable"))]


def _ollama_set(plans: PlanSet) -> dict[str, Any]:
    """Ollama's side of several models: one environment for ``ollama serve``, one created model per role.

    OLLAMA_MAX_LOADED_MODELS is the count, so no load evicts another; OLLAMA_NUM_PARALLEL is global (every
    runner but an embedding model's gets it), so it is the most slots any model needs, and a model planned with
    fewer is priced at what Ollama gives it.
    """
    models, refused, notes = [], [], []
    generating = {role: plan for role, plan in plans.plans.items() if not plan.spec.embedding}
    pairs = [(plan.config, plan.spec) for plan in plans.plans.values()]
    parallel = ollama_set_parallel(pairs)
    for role, plan in plans.plans.items():
        rendered = ollama_rendering(plan.config, plan.spec, plan.spec.model_ref, fit_margin_mib=plans.fit_margin_mib,
                                    role=role)
        if rendered["refused"]:
            refused.append(f"{role}: {rendered['refused']}")
            continue
        models.append({"role": role, **{key: rendered[key] for key in ("model", "modelfile", "create_request")}})
        if role in generating and plan.config.parallel < parallel:
            forced = estimate_memory(plan.spec, replace(plan.config, parallel=parallel), plans.profile)
            extra = (forced.gpu.total - plan.memory.gpu.total) / MIB
            notes.append(f"OLLAMA_NUM_PARALLEL={parallel} is global: Ollama gives {role} {parallel} slots, not the "
                         f"planned {plan.config.parallel} ({extra:,.0f} MiB more on the GPU there); llama-server "
                         f"runs each model with its own -np")
    if refused:
        return {"refused": "; ".join(refused), "env": None, "models": models, "notes": notes}
    env = ollama_set_env(pairs, fit_margin_mib=plans.fit_margin_mib)
    return {"refused": None, "env": env, "models": models, "notes": notes}


def plan_set_json(plans: PlanSet) -> dict[str, Any]:
    """Several models as one JSON object: each model's plan (the one-model keys, priced alone on the card) by
    role, and the set's total, fit and engine configs. One model gives :func:`plan_json` unchanged."""
    if not plans.several:
        return plan_json(plans.primary)
    return {
        "roles": plans.roles,
        "models": {role: {"role": role, **plan_json(plan, role=role)} for role, plan in plans.plans.items()},
        "profile": plans.profile.to_dict(),
        "total": {
            "gpu_mib": plans.total_mib,
            "usable_mib": plans.profile.usable_mib,
            "fit_margin_mib": plans.fit_margin_mib,
            "headroom_mib": plans.headroom_mib,
            "processes": len(plans.plans),
        },
        **({"devices": [{"name": card.name, "usable_mib": card.usable_mib,
                         "total_mib": round(sum(plan.memory.devices[index].total for plan in plans.plans.values())
                                            / MIB, 2),
                         "by_role": {role: plan.memory.devices[index].mib() for role, plan in plans.plans.items()}}
                        for index, card in enumerate(plans.profile.devices)]} if plans.profile.devices else {}),
        "fits": plans.fits,
        "headroom_mib": plans.headroom_mib,
        "breaking_term": plans.breaking_term,
        "ollama": _ollama_set(plans),
        "llama_server": {role: {"args": llama_server_args(plan.config, plan.spec.model_ref,
                                                           fit_margin_mib=plans.fit_margin_mib)}
                         for role, plan in plans.plans.items()},
        "notes": list(plans.notes),
    }


def format_plan_set(plans: PlanSet) -> str:
    """Several models as ``vramcap plan`` prints them: one row per model and the total, the verdict, the engine
    configs. One model prints as :func:`format_plan`."""
    from tabulate import tabulate

    if not plans.several:
        return format_plan(plans.primary)
    profile = plans.profile
    rows: list[tuple[object, ...]] = []
    for role, plan in plans.plans.items():
        gpu = plan.memory.gpu.mib()
        kind = f"{plan.config.parallel} x {plan.config.ctx_per_agent}" + (" (embedding)" if plan.spec.embedding else "")
        rows.append((role, plan.spec.name, kind, gpu["model_mib"], gpu["context_mib"], gpu["compute_mib"],
                     gpu["overhead_mib"], gpu["total_mib"]))
    rows.append(("total", f"{len(rows)} processes", "", "", "", "", "", plans.total_mib))
    verdict = "FITS" if plans.fits else "DOES NOT FIT"
    lines = [
        f"profile  {profile.name}: {profile.usable_mib} MiB usable ({profile.total_mib} total - "
        f"{profile.reserved_mib} reserved)",
        "",
        tabulate(rows, headers=("role", "model", "agents x ctx", "weights", "KV cache", "compute", "CUDA overhead",
                                "GPU MiB"), floatfmt=".2f"),
        *_set_device_lines(plans),
        "",
        f"{verdict}: {plans.headroom_mib:.0f} MiB free at peak{' on the tightest card' if profile.devices else ''}, "
        f"llama.cpp --fit keeps {plans.fit_margin_mib} MiB{' on each' if profile.devices else ''}",
    ]
    if plans.breaking_term:
        lines.append(f"breaks on: {plans.breaking_term}")
    ollama = _ollama_set(plans)
    if ollama["refused"]:
        lines += ["", f"ollama: cannot run this set: {ollama['refused']}"]
    else:
        lines += ["", "ollama serve environment (then create each model from its Modelfile):",
                  *(f"  {key}={value}" for key, value in ollama["env"].items()),
                  *(f"  {model['role']}: {model['model']}" for model in ollama["models"]),
                  *(f"  note: {note}" for note in ollama["notes"])]
    lines.append("llama-server, one per model:")
    for role, plan in plans.plans.items():
        args = llama_server_args(plan.config, plan.spec.model_ref, fit_margin_mib=plans.fit_margin_mib)
        lines.append(f"  {role}: llama-server " + " ".join(shlex.quote(arg) for arg in args))
    # The notes every plan shares (the compute model, the overhead's source) once, then each model's own.
    shared = [note for note in plans.primary.notes if all(note in plan.notes for plan in plans.plans.values())]
    own = [f"{role}: {note}" for role, plan in plans.plans.items() for note in plan.notes if note not in shared]
    lines += ["", *(f"note: {note}" for note in [*shared, *plans.notes, *own])]
    return "\n".join(lines)

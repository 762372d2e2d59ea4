"""``vramcap doctor``: a running llama-server or Ollama beside a plan for the same model and profile.

Exit codes: 0 it runs as planned, 1 findings (each with its evidence and fix), 2 bad input or nothing reachable.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..errors import BadInputError, ServerUnreachable
from ..net import http_url, ollama_host_url, redact
from ..options import PLAN_OPTIONS, add_options
from ..parsers import argparse_type
from .exits import EXIT_DOES_NOT_FIT, EXIT_OK

__all__ = ["add_doctor_options", "run_doctor"]


def add_doctor_options(parser: argparse.ArgumentParser) -> None:
    add_options(parser.add_argument, PLAN_OPTIONS, required={"model"})
    parser.add_argument("--server-url", type=argparse_type(http_url), default=None, metavar="URL",
                        help="a running llama-server to check (default: the Ollama at --ollama-url / $OLLAMA_HOST)")
    parser.add_argument("--served-model", default=None, metavar="NAME",
                        help="Ollama: the loaded model to check (default: NAME of --model ollama:NAME, else the only "
                             "model loaded)")
    parser.add_argument("--log", type=Path, default=None, metavar="FILE",
                        help="Ollama's server log: where the runner's flags are read when it runs on another machine")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_doctor(args: argparse.Namespace) -> int:
    from ..doctor import diagnose, observe_llama_server, observe_ollama
    from ..planner.resolve import plan_from_options

    if args.server_url and args.log:
        raise BadInputError("--log is Ollama's server log; a llama-server (--server-url) is read over HTTP and /proc")
    plan = plan_from_options(vars(args))
    url = args.server_url or args.ollama_url or ollama_host_url(os.environ.get("OLLAMA_HOST"))
    try:
        if args.server_url:
            seen = observe_llama_server(args.server_url)
        else:
            served = args.served_model or (str(args.model).removeprefix("ollama:")
                                           if str(args.model).startswith("ollama:") else None)
            seen = observe_ollama(url, served, args.log)
    except ServerUnreachable as exc:
        raise BadInputError(f"nothing answers at {redact(url)}: {str(exc).split(': ', 1)[-1]}") from None
    findings = diagnose(plan, seen)
    gpu = _gpu(plan)
    if args.json:
        print(json.dumps({"server": seen.to_dict(), "plan": _plan_summary(plan), "gpu": gpu,
                          "as_planned": not findings, "findings": [finding.to_dict() for finding in findings]},
                         indent=2))
    else:
        print(_header(seen, plan))
        print(gpu["line"])
        print("\n".join(finding.render() for finding in findings) if findings else "runs as planned")
    return EXIT_DOES_NOT_FIT if findings else EXIT_OK


def _gpu(plan: Any) -> dict[str, Any]:
    """The GPU as NVML sees it now: what is free and who holds the rest (the server among them)."""
    from ..gpu.nvml import detect_gpus, visible_gpu
    from ..gpu.room import read_room

    gpus, reason = detect_gpus()
    gpu = visible_gpu(gpus)
    room = read_room(gpu) if gpu is not None else None
    if room is None:
        return {"device": None, "reason": reason or "NVML could not be asked", "line": f"gpu: none ({reason})"}
    holders = [{"pid": holder.pid, "name": holder.name, "mib": round(holder.mib, 1)} for holder in room.holders]
    held = ", ".join(f"{holder.name} (pid {holder.pid}) {holder.mib:,.0f} MiB" for holder in room.holders)
    return {"device": room.gpu, "free_mib": round(room.free_mib, 1), "holders": holders,
            "line": f"gpu: {room.gpu}, {room.free_mib:,.0f} MiB free; held by {held or 'nothing'} "
                    f"(the plan: {plan.total_mib:,.0f} MiB at peak)"}


def _plan_summary(plan: Any) -> dict[str, Any]:
    config = plan.config
    return {"model": plan.spec.name, "profile": plan.profile.name, "agents": config.parallel,
            "ctx_per_agent": config.ctx_per_agent, "kv_cache": config.cache_type_k, "flash_attn": config.flash_attn,
            "ubatch": config.n_ubatch, "gpu_mib": round(plan.memory.gpu.total / 2**20, 1), "fits": plan.fits}


def _header(seen: Any, plan: Any) -> str:
    slots = f"{seen.slots} slot(s)" if seen.slots is not None else "slots not shown"
    ctx = f"{seen.ctx_per_slot:,} tokens each" if seen.ctx_per_slot is not None else "context not shown"
    flags = f"flags from {seen.flags_source}: {seen.flags.shown()}" if seen.flags is not None else \
        "its flags are not readable here (not on this machine; for Ollama, give its log with --log)"
    summary = _plan_summary(plan)
    flash = "on" if summary["flash_attn"] else "off"
    return (f"{seen.engine} {seen.version or ''} at {redact(seen.url)}: {seen.model}, {slots}, {ctx}\n  {flags}\n"
            f"plan: {summary['model']} on {summary['profile']}: {summary['agents']} agents x "
            f"{summary['ctx_per_agent']:,}, KV {summary['kv_cache']}, flash-attn {flash}, -ub {summary['ubatch']}, "
            f"{summary['gpu_mib']:,.0f} MiB on the GPU")

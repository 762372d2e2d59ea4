"""``vramcap diagnose LOG``: the verdicts of a llama-server (or Ollama) log, without running anything.

The OOM and CPU-offload verdicts are the ones the pytest plugin gives (:mod:`.verdicts`,
fed the log as an engine's evidence), so a log reads the same in both places.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engines.base import EngineEvidence
from ..engines.judge import Placement, judge_spill, layer_ranges
from ..engines.logparse import ServerLog, parse_server_log
from ..errors import BadInputError
from .verdicts import Verdict, offload_verdict, oom_verdict

__all__ = ["Diagnosis", "diagnose_log", "read_log"]

_MAX_LINE = 4096  # a binary file read as text can hold megabyte-long "lines"


def read_log(path: Path) -> ServerLog:
    """Parse a log file; a file that is not a llama.cpp log is bad input."""
    try:
        with path.open("rb") as handle:
            log = parse_server_log(_lines(handle))
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not a log file") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if not log.recognised:
        raise BadInputError(f"{path}: not a llama.cpp log (no llama-server or Ollama runner lines in it)")
    return log


def _lines(handle: Any) -> Iterator[str]:
    for raw in handle:
        yield raw[:_MAX_LINE].decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Diagnosis:
    log: ServerLog
    oom: Verdict
    offload: Verdict
    moved_mib: float | None
    layers_moved: tuple[int, ...]

    @property
    def failed(self) -> bool:
        return self.oom.failed or self.offload.failed

    def to_dict(self) -> dict[str, Any]:
        log, breakdown = self.log, self.log.final_breakdown
        return {
            "oom": self.oom.failed,
            "cpu_offload": self.offload.failed,
            "evidence": [line.removeprefix("log: ") for line in self.oom.evidence + self.offload.evidence],
            "moved_mib": self.moved_mib,
            "layers_moved": list(self.layers_moved),
            "buffers": {
                "by_backend": {"model": log.model.by_backend, "kv": log.kv.by_backend,
                               "compute": log.compute.by_backend},
                "gpu": {"model": log.model.device(), "kv": log.kv.device(), "compute": log.compute.device()},
                "host": {"model": log.model.host(), "kv": log.kv.host(), "compute": log.compute.host()},
            },
            "layers": {"offloaded": log.offloaded_layers[0], "total": log.offloaded_layers[1]}
            if log.offloaded_layers else None,
            "fit": {"ran": log.fit_ran, "unchanged": log.fit_unchanged, "reduce_mib": log.fit_reduce_mib,
                    "devices": [{"device": d.device, "layers": d.layers, "overflowing": d.overflowing,
                                 "used_mib": d.used_mib, "free_mib": d.free_mib} for d in log.fit_devices]},
            "breakdown_at_exit_mib": breakdown.__dict__ if breakdown else None,
            "verdicts": [verdict.model_dump() for verdict in (self.oom, self.offload)],
        }

    def render(self) -> str:
        log = self.log
        lines = [self.oom.describe(), self.offload.describe(), "", "buffers (MiB)      GPU       host"]
        for name, buffers in (("model", log.model), ("KV cache", log.kv), ("compute", log.compute)):
            lines.append(f"  {name:<12} {buffers.device():>9.2f}  {buffers.host():>9.2f}")
        if log.offloaded_layers:
            lines.append(f"layers on the GPU: {log.offloaded_layers[0]}/{log.offloaded_layers[1]}")
        if log.fit_ran:
            decisions = [f"  {d.device}: {d.layers} layers ({d.overflowing} overflowing), {d.used_mib} MiB used, "
                         f"{d.free_mib} MiB free" for d in log.fit_devices]
            lines += ["--fit: " + ("changed nothing" if log.fit_unchanged or not decisions else "moved weights")]
            lines += decisions
        if self.layers_moved:
            lines.append(f"layers with weights on the CPU: {layer_ranges(self.layers_moved)}")
        row = log.final_breakdown
        if row is not None:
            lines.append(f"memory breakdown at exit (MiB): {row.device}: total {row.total} = free {row.free} + "
                         f"(self {row.self_mib} = model {row.model} + context {row.context} + compute "
                         f"{row.compute}) + unaccounted {row.unaccounted}")
        return "\n".join(lines)


def diagnose_log(log: ServerLog, placement: Placement | None = None) -> Diagnosis:
    evidence = EngineEvidence(log=log)
    judgement = judge_spill(log, placement)
    return Diagnosis(log, oom_verdict(None, evidence), offload_verdict(evidence, placement),
                     judgement.moved_mib if judgement.cpu_offload else 0.0, judgement.layers)

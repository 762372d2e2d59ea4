"""Constants shared across stages, each with one home.

Kept import-free so that the pytest plugin, the option table and the CLI can
read them without loading the planner.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_AGENTS",
    "DEFAULT_BASELINE_DIR",
    "DEFAULT_BASELINE_RUNS",
    "DEFAULT_BATCH",
    "DEFAULT_COMPARE_FAIL",
    "DEFAULT_CTX_PER_AGENT",
    "DEFAULT_FIT_MARGIN_MIB",
    "DEFAULT_HOST",
    "DEFAULT_LOAD_SCENARIO",
    "DEFAULT_MIX",
    "DEFAULT_MODEL",
    "DEFAULT_OLLAMA_URL",
    "DEFAULT_PROFILE",
    "DEFAULT_REPORT_DIR",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_ROUNDS",
    "DEFAULT_STARTUP_TIMEOUT_S",
    "DEFAULT_UBATCH",
    "MAX_AGENTS",
    "MIB",
]

MIB = 1024 * 1024
"""Every memory figure is in MiB (2^20 bytes), as llama.cpp and NVML report them."""

DEFAULT_FIT_MARGIN_MIB = 1024
"""What llama.cpp's ``--fit`` keeps free per GPU (``--fit-target``, ``LLAMA_ARG_FIT_TARGET``)."""

DEFAULT_CTX_PER_AGENT = 8192
"""Context per agent when the user names none and the planner is not solving for it."""

DEFAULT_AGENTS = 4
"""Slots the pytest plugin plans when ``--vramcap-agents`` is not given."""

MAX_AGENTS = 64
"""The solver's upper bound on slots."""

DEFAULT_UBATCH = 512
DEFAULT_BATCH = 2048
"""llama.cpp's own ``-ub`` and ``-b`` defaults."""

DEFAULT_MODEL = "small:F16"
"""The pytest plugin's model: 254 MB of F16 weights whose CPU decode batches well (docs/benchmarks.md)."""

DEFAULT_MIX = "Q4_K_M"
"""Quantization mix of a shape named without one."""

DEFAULT_PROFILE = "16gb"
"""The CLI's VRAM profile when ``--profile`` is left out."""

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"

DEFAULT_HOST = "127.0.0.1"
"""Servers we start bind to loopback unless told otherwise."""

DEFAULT_STARTUP_TIMEOUT_S = 300.0
DEFAULT_REQUEST_TIMEOUT_S = 300.0
"""How long the engine may stay silent in one request: a long prefill on a slow card, not a hung server."""

DEFAULT_ROUNDS = 3
"""Interleaved sequential/parallel rounds a speedup is the median of (the gate's allowances in docs/benchmarks.md
were measured on three); a scenario runs only the rounds its verdicts read."""

DEFAULT_LOAD_SCENARIO = "scenarios/research-fanout.yaml"
"""The graph ``vramcap load`` and the locustfile's users run when no scenario is named (relative to the current
directory; locustfiles/agents.py names the one beside it)."""

DEFAULT_REPORT_DIR = "reports"

DEFAULT_COMPARE_FAIL = "speedup:10%,ttft_p95:20%,peak_vram:2%"
"""How much worse than its baseline a metric may get before the regression gate fails (and the noise allowance
of report/compare.py on top)."""

DEFAULT_BASELINE_DIR = ".vramcap/baselines"
"""Where named baselines live, relative to the rootdir."""

DEFAULT_BASELINE_RUNS = 5
"""Runs a baseline keeps: enough for its spread to show how much identical runs differ on this machine."""

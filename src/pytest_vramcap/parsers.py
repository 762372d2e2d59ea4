"""Value parsers for the option table (:mod:`.options`), shared by the CLI and the pytest plugin.

Each raises ValueError with a message fit for one error line; ``argparse_type``
turns that into the ArgumentTypeError argparse reports as a usage error.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "RoleValue",
    "argparse_type",
    "baseline_name",
    "boolean",
    "checked_number",
    "choice",
    "compare_fail",
    "gpu_layers",
    "load_slo",
    "non_empty",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "role_value",
]

T = TypeVar("T", bound=str)
V = TypeVar("V")


def checked_number(value: object, *, integer: bool, lo: float, hi: float, strict_lo: bool = False) -> float:
    """``value`` as a finite number within ``[lo, hi]`` (``(lo, hi]`` with ``strict_lo``), or ValueError.

    The one check behind option values, profile TOML and model metadata: strings,
    booleans, NaN, infinities, 1e400 and out-of-range values all end here in one
    line, never as an OverflowError or a negative size further on. ``integer``
    accepts whole floats (JSON has no integers of its own).
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be {kind}, got {str(value)[:40]!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    if integer and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"must be {kind}, got {value}")
    if value < lo or (strict_lo and value == lo) or value > hi:
        got = _show(value) if abs(value) < 1e15 else f"a {len(str(int(value)))}-digit number"
        raise ValueError(f"must be {'>' if strict_lo else '>='} {_show(lo)} and <= {_show(hi)}, got {got}")
    return int(value) if integer else float(value)


def _show(number: float) -> str:
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


_INT_LIMIT = 2**31 - 1  # what llama.cpp and Ollama keep counts in


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text[:40]}")
    return int(checked_number(value, integer=True, lo=1, hi=_INT_LIMIT))


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text[:40]}")
    return int(checked_number(value, integer=True, lo=0, hi=_INT_LIMIT))


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    return int(checked_number(_int(text), integer=True, lo=1, hi=65535))


def positive_float(text: str) -> float:
    """A finite number > 0 (NaN and infinity would make timeouts and minimums meaningless)."""
    value = _float(text)
    if value <= 0:
        raise ValueError(f"must be positive, got {text[:40]}")
    return checked_number(value, integer=False, lo=0, hi=1e9, strict_lo=True)


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text[:40]}")
    return checked_number(value, integer=False, lo=0, hi=1e9)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


# What a load run can be held to: a ceiling for latencies and the failure ratio, a floor for throughput.
LOAD_SLO_CEILINGS = ("failure_ratio", "ttft_p50_s", "ttft_p95_s", "tpot_p50_s", "tpot_p95_s", "e2e_p95_s",
                     "graph_p95_s")
LOAD_SLO_FLOORS = ("output_tps",)


def load_slo(text: str) -> tuple[str, float]:
    """``ttft_p95_s=2.5`` -> ("ttft_p95_s", 2.5); names from LOAD_SLO_CEILINGS and LOAD_SLO_FLOORS."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or name not in (*LOAD_SLO_CEILINGS, *LOAD_SLO_FLOORS):
        raise ValueError(f"{text[:60]!r}: use NAME=VALUE with NAME one of "
                         f"{', '.join((*LOAD_SLO_CEILINGS, *LOAD_SLO_FLOORS))}")
    # No failure at all is a fair objective; a latency or throughput bound of 0 is not.
    return name, (non_negative_float if name == "failure_ratio" else positive_float)(value.strip())


def compare_fail(text: str) -> tuple[tuple[str, float, bool], ...]:
    """``speedup:10%,peak_vram:200`` -> ((metric, amount, relative), ...): how much worse a metric may get
    than its baseline, in percent of the baseline or in the metric's own unit (pytest-benchmark's
    ``--benchmark-compare-fail`` form). Metrics from :data:`~pytest_vramcap.types.GATE_METRICS`."""
    from .types import GATE_METRICS

    found: dict[str, tuple[str, float, bool]] = {}
    for part in text.split(","):
        name, sep, amount = (piece.strip() for piece in part.partition(":"))
        if not sep or name not in GATE_METRICS:
            raise ValueError(f"{part.strip()[:40]!r}: use METRIC:PERCENT% or METRIC:AMOUNT with METRIC one of "
                             f"{', '.join(GATE_METRICS)}")
        relative = amount.endswith("%")
        value = non_negative_float(amount.removesuffix("%").strip())
        found[name] = (name, value, relative)  # a metric named twice: the last wins, as on a command line
    return tuple(found.values())


def baseline_name(text: str) -> str:
    """A baseline's name (``main``, ``qwen14b-8k``: letters, digits, ``.``, ``_``, ``-``) or a path to a ``.json``
    file (a baseline another job saved)."""
    import re

    name = text.strip()
    if name.endswith(".json") or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        return name
    raise ValueError(f"{text[:60]!r}: a name of letters, digits, '.', '_' and '-', or a path ending in .json")


def gpu_layers(text: str) -> int | None:
    """``-ngl``: a layer count, or ``all`` / ``-1`` for every layer (None)."""
    return None if text.strip().lower() in ("all", "-1") else non_negative_int(text)



def non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def boolean(text: str) -> bool:
    """ini-style booleans: true/false, yes/no, on/off, 1/0."""
    key = text.strip().lower()
    if key in ("true", "yes", "on", "1"):
        return True
    if key in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def choice(choices: tuple[T, ...]) -> Callable[[str], T]:
    """A parser accepting one of ``choices`` (case-insensitive), returned as the choice itself."""

    def parse(text: str) -> T:
        for option in choices:
            if text.lower() == option:
                return option
        raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")

    return parse





def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a parser for argparse's ``type=``: bad values become usage errors."""

    def wrapper(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapper.__name__ = getattr(parse, "__name__", "value")
    return wrapper


_ROLE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,31})=(.*)$", re.S)


@dataclass(frozen=True)
class RoleValue(Generic[V]):
    """One value of a repeatable option, for one model role (``chat=qwen2.5-7b``) or for every model (``4``)."""

    role: str | None
    value: V

    def __str__(self) -> str:
        return f"{self.role}={self.value}" if self.role else str(self.value)


def role_value(parse: Callable[[str], V]) -> Callable[[str], RoleValue[V]]:
    """A parser of ``ROLE=VALUE`` or ``VALUE``, the value parsed by ``parse``.

    A role is a short name (a letter, then letters, digits, ``_`` or ``-``): a path or
    ``ollama:NAME`` before an ``=`` is not one, so ``./a=b.gguf`` stays a value.
    """

    def parser(text: str) -> RoleValue[V]:
        match = _ROLE_RE.match(text.strip())
        if match is None:
            return RoleValue(None, parse(text))
        role, value = match.groups()
        if not value.strip():
            raise ValueError(f"{text.strip()[:60]!r}: nothing after {role}=")
        try:
            return RoleValue(role, parse(value))
        except ValueError as exc:
            raise ValueError(f"{role}: {exc}") from None

    parser.__name__ = getattr(parse, "__name__", "value")
    return parser

"""Value parsers for the option table (:mod:`.options`), shared by the CLI and the pytest plugin.

Each raises ValueError with a message fit for one error line; ``argparse_type``
turns that into the ArgumentTypeError argparse reports as a usage error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "argparse_type",
    "base_url",
    "boolean",
    "choice",
    "gpu_layers",
    "http_url",
    "non_empty",
    "non_negative_int",
    "positive_float",
    "positive_int",
]

T = TypeVar("T", bound=str)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"must be positive, got {text}")
    return value


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


def http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text) < 10:
        raise ValueError(f"must be an http(s) URL, got {text!r}")
    return text.rstrip("/")


def base_url(text: str) -> str:
    """A server address as users write it (``host:port`` or a URL) as a URL without a trailing slash."""
    url = text.strip().rstrip("/")
    return url if url.startswith(("http://", "https://")) else "http://" + url


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a parser for argparse's ``type=``: bad values become usage errors."""

    def wrapper(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapper.__name__ = getattr(parse, "__name__", "value")
    return wrapper

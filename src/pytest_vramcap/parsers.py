"""Value parsers shared by the CLI and the pytest options.

Each raises ValueError with a message fit for one error line; ``argparse_type``
turns that into the ArgumentTypeError argparse reports as a usage error.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["positive_int", "non_negative_int", "positive_float", "choice", "http_url", "base_url", "argparse_type"]


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


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text.lower()

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

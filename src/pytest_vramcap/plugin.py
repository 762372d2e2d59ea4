"""pytest entry point (``pytest11``): options and the report header.

Kept thin and free of heavy imports: loading the plugin must cost nothing on a
machine without a GPU or without the engine extra. The fixtures, scenarios and
verdicts build on this in later modules.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

PROFILE_KEY = pytest.StashKey[Any]()


def _profile_option(text: str) -> str:
    from .errors import ProfileError
    from .profiles import resolve_profile

    try:
        resolve_profile(text)
    except ProfileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vramcap", "VRAM capacity tests (pytest-vramcap)")
    group.addoption("--vram-profile", dest="vram_profile", default=None, type=_profile_option, metavar="PROFILE",
                    help="VRAM budget to plan and test against: 16gb, 24GiB, rtx4080, h100-80gb...")
    parser.addini("vramcap_vram_profile", "default for --vram-profile", default=None)


def pytest_configure(config: pytest.Config) -> None:
    text = config.getoption("vram_profile") or config.getini("vramcap_vram_profile")
    if not text:
        return
    from .errors import ProfileError
    from .profiles import resolve_profile

    try:
        config.stash[PROFILE_KEY] = resolve_profile(text)
    except ProfileError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    profile = config.stash.get(PROFILE_KEY, None)
    if profile is None:
        return None
    return (f"vramcap: profile {profile.name} ({profile.usable_mib} MiB usable, "
            f"overhead {profile.overhead_mib} MiB: {profile.overhead_source})")

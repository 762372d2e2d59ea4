"""The public face: what the README documents imports from the top-level package, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_vramcap


@pytest.mark.parametrize("name", [n for n in pytest_vramcap.__all__ if n != "__version__"])
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(pytest_vramcap, name) is not None
    assert name in dir(pytest_vramcap)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pytest_vramcap.nope  # noqa: B018


def test_importing_the_package_loads_no_stage() -> None:
    code = ("import sys, pytest_vramcap; print(sorted(m for m in sys.modules "
            "if m.startswith('pytest_vramcap.') or m in ('gguf', 'numpy', 'httpx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The pytest11 entry point: --vram-profile is parsed at start-up and named in the header."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_profile_in_report_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    assert True\n")
    result = pytester.runpytest_subprocess("--vram-profile=16gb")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["vramcap: profile 16gb (16384 MiB usable*"])


def test_bad_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    assert True\n")
    result = pytester.runpytest_subprocess("--vram-profile=12potatoes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown VRAM profile '12potatoes'*"])
    assert "Traceback" not in result.stderr.str()


def test_plugin_loads_without_heavy_imports(pytester: pytest.Pytester) -> None:
    """Loading the plugin must not import numpy/gguf (or a GPU library) into every test run."""
    pytester.makepyfile(
        "import sys\n"
        "def test_light():\n"
        "    assert 'pytest_vramcap.plugin' in sys.modules\n"
        "    assert 'gguf' not in sys.modules and 'pynvml' not in sys.modules\n"
        "    assert 'locust' not in sys.modules and 'gevent' not in sys.modules  # Locust monkey-patches at import\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)  # loaded through the pytest11 entry point

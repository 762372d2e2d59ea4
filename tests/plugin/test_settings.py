"""Settings resolution: command line over ini over defaults, ini aliases, engine resolution (parsed, not run)."""

from __future__ import annotations

import pytest

from pytest_vramcap.model.source import OllamaModel, ShapeSource
from pytest_vramcap.options import single_model_values
from pytest_vramcap.plugin.settings import Settings

pytest_plugins = ["pytester"]


def settings(pytester: pytest.Pytester, *args: str) -> Settings:
    resolved = Settings.from_config(pytester.parseconfig(*args))
    assert resolved is not None
    return resolved


def test_not_enabled_without_a_profile(pytester: pytest.Pytester) -> None:
    assert Settings.from_config(pytester.parseconfig()) is None


def test_command_line_over_ini_over_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvramcap_vram_profile = rtx4080\nvramcap_agents = 2\nvramcap_ctx = 2048\n"
                     "vramcap_kv_cache = q4_0\nvramcap_kv_unified = true\n")
    from_ini = settings(pytester)
    assert from_ini.profile == "rtx4080"
    ini_model = single_model_values(dict(from_ini.plan_values))
    assert (ini_model["agents"], ini_model["ctx_per_agent"]) == (2, 2048)  # ctx: an alias
    assert from_ini.plan_values["kv_cache"] == "q4_0" and from_ini.plan_values["kv_unified"] is True
    from_cli = settings(pytester, "--vram-profile=16gb", "--vramcap-agents=3")
    assert from_cli.profile == "16gb" and single_model_values(dict(from_cli.plan_values))["agents"] == 3
    assert from_cli.plan_values["ubatch"] == 512  # neither: the table's default


def test_a_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvramcap_vram_profile = 16gb\nvramcap_agents = many\n")
    with pytest.raises(pytest.UsageError, match="ini key vramcap_agents: 'many' is not an integer"):
        settings(pytester)


@pytest.mark.parametrize("args, engine, server_url", [
    ([], "llamacpp", None),
    (["--vramcap-server-url=http://127.0.0.1:8080"], "url", "http://127.0.0.1:8080"),
    (["--vramcap-engine=ollama"], "ollama", "http://127.0.0.1:11434"),
    (["--vramcap-engine=ollama", "--vramcap-ollama-url=http://10.0.0.2:11434"], "ollama", "http://10.0.0.2:11434"),
])
def test_engine_resolution(pytester: pytest.Pytester, args: list[str], engine: str, server_url: str | None) -> None:
    resolved = settings(pytester, "--vram-profile=16gb", *args)
    assert (resolved.engine, resolved.server_url) == (engine, server_url)


def test_the_model_source_follows_the_engine(pytester: pytest.Pytester) -> None:
    assert settings(pytester, "--vram-profile=16gb").model_source() == ShapeSource("small", "F16")
    ollama = settings(pytester, "--vram-profile=16gb", "--vramcap-engine=ollama", "--vramcap-model=qwen2.5:14b")
    assert ollama.model_source() == OllamaModel("qwen2.5:14b", "http://127.0.0.1:11434")


def test_url_engine_needs_a_url_and_llamacpp_cannot_serve_an_ollama_model(pytester: pytest.Pytester) -> None:
    from pytest_vramcap.errors import ModelSourceError

    with pytest.raises(pytest.UsageError, match="--vramcap-engine=url needs --vramcap-server-url"):
        settings(pytester, "--vram-profile=16gb", "--vramcap-engine=url")
    embedded = settings(pytester, "--vram-profile=16gb", "--vramcap-model=ollama:qwen2.5:14b")
    with pytest.raises(ModelSourceError, match="needs --vramcap-engine=ollama"):
        embedded.model_source()


def test_baseline_paths_follow_where_they_were_given(pytester: pytest.Pytester) -> None:
    """A baseline name lives in the baseline directory; a ``.json`` path is taken like any path option: from
    the ini file against its directory, from the command line against where pytest started."""
    sub = pytester.mkdir("sub")
    sub.joinpath("pytest.ini").write_text("[pytest]\nvramcap_vram_profile = 16gb\nvramcap_compare = ci/main.json\n"
                                          "vramcap_save_baseline = nightly\n")
    from_ini = settings(pytester, "-c", str(sub / "pytest.ini"))
    assert from_ini.compare == sub / "ci" / "main.json"
    assert from_ini.save_baseline == sub / ".vramcap" / "baselines" / "nightly.json"  # the rootdir: the ini's
    from_cli = settings(pytester, "-c", str(sub / "pytest.ini"), "--vramcap-compare=other.json")
    assert from_cli.compare == pytester.path / "other.json"

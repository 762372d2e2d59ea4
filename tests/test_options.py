"""The one option table: the CLI and the pytest plugin register, parse and plan from the same definitions."""

from __future__ import annotations

import argparse
import re

import pytest

from pytest_vramcap.cli import _build_parser
from pytest_vramcap.errors import BadInputError, ConfigError
from pytest_vramcap.options import DEFAULT_ROLE, ENGINE_OPTIONS, PLAN_OPTIONS, RUN_OPTIONS, add_options, role_values
from pytest_vramcap.parsers import RoleValue, role_value
from pytest_vramcap.planner import PlanRequest
from pytest_vramcap.plugin.settings import PROFILE_OPTION

pytest_plugins = ["pytester"]

CLI_FLAGS = ["--agents", "3", "--ctx", "4096", "--kv-cache", "Q8_0", "--ubatch", "256", "--gpu-layers", "20",
             "--fit-margin", "512", "--kv-unified"]


def cli_values(*flags: str) -> dict[str, object]:
    return vars(_build_parser().parse_args(["plan", "--model", "tiny:Q8_0", *flags]))


def test_names_are_unique_across_the_table() -> None:
    options = (*PLAN_OPTIONS, *ENGINE_OPTIONS, *RUN_OPTIONS)
    names = [name for option in options for name in (option.name, *option.aliases)]
    assert len(names) == len(set(names))


def test_cli_and_plugin_build_the_same_plan_request(pytester: pytest.Pytester) -> None:
    from pytest_vramcap.plugin.settings import Settings

    config = pytester.parseconfig("--vram-profile=16gb", "--vramcap-model=tiny:Q8_0",
                                  *[flag.replace("--", "--vramcap-", 1) if flag.startswith("--") else flag
                                    for flag in CLI_FLAGS])
    settings = Settings.from_config(config)
    assert settings is not None
    from_cli, from_plugin = PlanRequest.from_options(cli_values(*CLI_FLAGS)), PlanRequest.from_options(
        settings.plan_values)
    assert from_cli == from_plugin == PlanRequest(agents=3, ctx_per_agent=4096, kv_cache="q8_0", ubatch=256,
                                                  gpu_layers=20, fit_margin_mib=512, kv_unified=True)


def test_defaults_differ_only_where_the_table_says(pytester: pytest.Pytester) -> None:
    """vramcap plan solves for what is left out; a pytest run plans 4 agents x 8192 of small:F16."""
    from pytest_vramcap.plugin.settings import Settings

    settings = Settings.from_config(pytester.parseconfig("--vram-profile=16gb"))
    assert settings is not None
    cli = cli_values()
    for option in PLAN_OPTIONS:
        if option.name in ("model", "profile"):
            continue
        expected = {"agents": 4, "ctx-per-agent": 8192}.get(option.name, cli[option.dest])
        assert settings.plan_values[option.dest] == expected, option.name
    assert settings.model == "small:F16" and settings.profile == "16gb"


@pytest.mark.parametrize("flags, message", [
    (["--kv-cache", "q3"], "--kv-cache: must be one of"),
    (["--agents", "0"], "--agents: must be a positive integer"),
    (["--gpu-layers", "some"], "--gpu-layers: 'some' is not an integer"),
    (["--flash-attn", "maybe"], "--flash-attn: must be one of on, off"),
])
def test_the_cli_refuses_what_the_table_refuses(flags: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        cli_values(*flags)


def test_gpu_layers_all_means_every_layer() -> None:
    assert cli_values("--gpu-layers", "all")["gpu_layers"] is None
    assert cli_values("--gpu-layers", "-1")["gpu_layers"] is None


def test_add_options_registers_aliases_and_required_options() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument, PLAN_OPTIONS, prefix="x-", dest_prefix="x_", with_defaults=False,
                required={"model"})
    args = parser.parse_args(["--x-model", "m", "--x-ctx", "512"])
    assert args.x_ctx_per_agent == [RoleValue(None, 512)] and args.x_agents is None and args.x_kv_cache is None


def test_per_role_options_split_by_model() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument, PLAN_OPTIONS)
    args = parser.parse_args(["--model", "chat=qwen2.5-7b", "--model", "embed=qwen3-embedding-0.6b",
                              "--agents", "4", "--ctx", "chat=4096", "--ctx", "embed=2048"])
    roles = role_values(vars(args))
    assert list(roles) == ["chat", "embed"]
    assert [(r["model"], r["agents"], r["ctx_per_agent"]) for r in roles.values()] == [
        ("qwen2.5-7b", 4, 4096), ("qwen3-embedding-0.6b", 4, 2048)]
    one = role_values(vars(parser.parse_args(["--model", "./dir=x/m.gguf", "--agents", "2"])))
    assert one == {DEFAULT_ROLE: {**one[DEFAULT_ROLE], "model": "./dir=x/m.gguf", "agents": 2}}
    # Given again without a role, the last value wins, as for any option (a test's extra args override).
    again = role_values(vars(parser.parse_args(["--model", "a", "--model", "b", "--ctx", "1024", "--ctx", "2048"])))
    assert [(r["model"], r["ctx_per_agent"]) for r in again.values()] == [("b", 2048)]


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "chat=a", "--model", "chat=b"], "role chat is named twice"),
    (["--model", "a", "--model", "chat=b"], "--model a names no role beside models that do"),
    (["--model", "chat=a", "--agents", "critic=2"], "no model has role critic (roles: chat)"),
    (["--model", "chat=a", "--ctx", "chat=512", "--ctx", "chat=1024"], "role chat is named twice"),
])
def test_bad_roles_are_one_line(argv: list[str], message: str) -> None:
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument, PLAN_OPTIONS)
    with pytest.raises(ConfigError, match=re.escape(message)):
        role_values(vars(parser.parse_args(argv)))


def test_a_role_with_nothing_after_it_is_refused_by_the_parser() -> None:
    with pytest.raises(ValueError, match="nothing after chat="):
        role_value(str)("chat= ")


def test_the_headline_option_is_not_prefixed(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig(f"{PROFILE_OPTION}=rtx4080")
    assert config.getoption("vram_profile") == "rtx4080"
    with pytest.raises(pytest.UsageError):
        pytester.parseconfig("--vramcap-profile=rtx4080")

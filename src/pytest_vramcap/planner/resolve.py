"""From option values to a plan: the one path the CLI and the pytest plugin share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model.loader import load_model
from ..model.source import ModelSource, parse_model_source
from .plan import Plan, PlanRequest
from .profiles import load_user_profiles, resolve_profile
from .solver import make_plan

__all__ = ["model_source_from_options", "plan_from_options"]


def model_source_from_options(values: Mapping[str, Any]) -> ModelSource:
    """``--model`` with ``--quant`` and ``--ollama-url`` as one typed source."""
    return parse_model_source(values["model"], quant=values["quant"], ollama_url=values["ollama_url"])


def plan_from_options(values: Mapping[str, Any], source: ModelSource | None = None) -> Plan:
    """Plan from the option table's values (keyed by ``dest``); ``source`` overrides ``--model``.

    Raises the BadInputError kinds (profile, model, config) with one-line messages.
    """
    profile = resolve_profile(values["profile"], load_user_profiles(values["profiles_file"]))
    request = PlanRequest.from_options(values)
    spec = load_model(source if source is not None else model_source_from_options(values))
    return make_plan(spec, profile, request)

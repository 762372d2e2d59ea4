"""From option values to a plan: the one path the CLI and the pytest plugin share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model.loader import load_model
from ..model.source import ModelSource, parse_model_source
from ..options import role_values, single_model_values
from ..parsers import RoleValue
from .modelset import PlanSet, make_plan_set
from .plan import Plan, PlanRequest
from .profiles import load_user_profiles, resolve_profile
from .solver import make_plan

__all__ = ["model_source_from_options", "plan_from_options", "plan_set_from_options"]


def model_source_from_options(values: Mapping[str, Any]) -> ModelSource:
    """``--model`` of one model's values (:func:`~pytest_vramcap.options.single_model_values`, or a role's) with
    ``--quant`` and ``--ollama-url`` as one typed source."""
    return parse_model_source(str(values["model"]), quant=values["quant"], ollama_url=values["ollama_url"])


def plan_from_options(values: Mapping[str, Any], source: ModelSource | None = None) -> Plan:
    """Plan one model from the option table's values (keyed by ``dest``); ``source`` overrides ``--model``.

    Raises the BadInputError kinds (profile, model, config) with one-line messages.
    """
    values = single_model_values(dict(values))
    profile = resolve_profile(values["profile"], load_user_profiles(values["profiles_file"]))
    request = PlanRequest.from_options(values)
    spec = load_model(source if source is not None else model_source_from_options(values))
    return make_plan(spec, profile, request)


def plan_set_from_options(values: Mapping[str, Any], sources: Mapping[str, ModelSource] | None = None, *,
                          prefix: str = "") -> PlanSet:
    """Plan every model the values name (``--model ROLE=SRC``, repeated) on one card; ``sources`` (by role)
    overrides the model each role's option names."""
    by_role = role_values(dict(values), prefix=prefix)
    profile = resolve_profile(values["profile"], load_user_profiles(values["profiles_file"]))
    specs = {role: load_model(sources[role] if sources and role in sources else model_source_from_options(role_dict))
             for role, role_dict in by_role.items()}
    requests = {role: PlanRequest.from_options(role_dict) for role, role_dict in by_role.items()}
    return make_plan_set(specs, profile, requests, named=_named_options(values))


def _named_options(values: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Which per-role options each role named for itself (``--agents chat=4``)."""
    named: dict[str, set[str]] = {}
    for dest in ("agents", "ctx_per_agent"):
        items = values.get(dest)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, RoleValue) and item.role:
                named.setdefault(item.role, set()).add(dest)
    return {role: frozenset(dests) for role, dests in named.items()}

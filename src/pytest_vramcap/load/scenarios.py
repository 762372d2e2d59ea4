"""Fan-out scenarios: LangGraph-style super-steps of agents, from YAML.

A scenario is a list of steps; the agents of one step read the same state and
run together (in parallel mode) or one after another (sequential mode); their
outputs merge into the state before the next step. Prompts are templates over
that state: ``{task}`` reads an input, ``{plan.supervisor}`` the output of the
``supervisor`` agent of step ``plan``. References are checked at load time.

    name: supervisor-map-reduce
    inputs: {task: "a CLI that converts CSV to JSON"}
    shared_prefix: "You are one agent of a small team."
    expect: {min_speedup: 1.2, slo: {ttft_p95_s: 30}}
    steps:
      - name: plan
        agents:
          - {role: supervisor, prompt: "Split this task: {task}", max_tokens: 48}
      - name: work
        agents:
          - {role: coder, prompt: "Plan: {plan.supervisor}. Write the code.", max_tokens: 96}
          - {role: writer, prompt: "Plan: {plan.supervisor}. Write the docs.", max_tokens: 96}
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ScenarioError

__all__ = ["SLO", "Agent", "Expectations", "Scenario", "Step", "load_scenario", "render_prompt"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLO(_Strict):
    """Latency objectives in seconds over the scenario's requests (each optional)."""

    ttft_p50_s: float | None = Field(default=None, gt=0)
    ttft_p95_s: float | None = Field(default=None, gt=0)
    tpot_p50_s: float | None = Field(default=None, gt=0)
    tpot_p95_s: float | None = Field(default=None, gt=0)
    e2e_p95_s: float | None = Field(default=None, gt=0)

    def items(self) -> list[tuple[str, float]]:
        return [(name, value) for name, value in self.model_dump().items() if value is not None]


class Expectations(_Strict):
    min_speedup: float | None = Field(default=None, gt=0)
    """Sequential wall time over parallel wall time must reach this."""
    slo: SLO = SLO()


class Agent(_Strict):
    role: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prompt: str = Field(min_length=1)
    system: str | None = None
    max_tokens: int = Field(default=64, ge=1, le=32768)


class Step(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    agents: list[Agent] = Field(min_length=1)

    @field_validator("agents")
    @classmethod
    def _unique_roles(cls, agents: list[Agent]) -> list[Agent]:
        roles = [agent.role for agent in agents]
        duplicates = sorted({role for role in roles if roles.count(role) > 1})
        if duplicates:
            raise ValueError(f"duplicate roles in one step: {', '.join(duplicates)}")
        return agents


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    inputs: dict[str, str] = Field(default_factory=dict)
    shared_prefix: str = ""
    """A system-prompt prefix every agent shares (what prompt caching can reuse)."""
    max_ref_chars: int = Field(default=1200, ge=1)
    """Earlier outputs are cut to this many characters when spliced into a prompt."""
    expect: Expectations = Expectations()
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> Scenario:
        known: dict[str, set[str]] = {}
        for step in self.steps:
            if step.name in known or step.name in self.inputs:
                raise ValueError(f"step name {step.name!r} is used twice")
            for agent in step.agents:
                for ref in _references(agent.prompt):
                    head, _, tail = ref.partition(".")
                    if not tail and head in self.inputs:
                        continue
                    if head not in known:
                        raise ValueError(f"agent {step.name}.{agent.role} reads {{{ref}}}, which is not an input "
                                         f"or an earlier step")
                    if tail not in known[head]:
                        raise ValueError(f"agent {step.name}.{agent.role} reads {{{ref}}}, but step {head!r} has "
                                         f"no agent {tail!r}")
            known[step.name] = {agent.role for agent in step.agents}
        return self

    @property
    def max_width(self) -> int:
        """Most agents in one step: the slots a parallel run needs."""
        return max(len(step.agents) for step in self.steps)

    @property
    def agent_count(self) -> int:
        return sum(len(step.agents) for step in self.steps)


def _references(template: str) -> list[str]:
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ValueError(f"bad template {template!r}: {exc}") from None


def render_prompt(template: str, state: Mapping[str, Any], max_ref_chars: int) -> str:
    """Fill ``{input}`` and ``{step.role}`` fields from the state (validated at load)."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if field is None:
            continue
        head, _, tail = field.partition(".")
        value = state[head][tail] if tail else state[head]
        out.append(str(value)[:max_ref_chars])
    return "".join(out)


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file; any problem is one ScenarioError line."""
    import yaml

    path = Path(path)
    try:
        if not path.is_file():
            raise ScenarioError(f"scenario file {str(path)[:200]!r} does not exist")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ScenarioError(f"{path}: not valid YAML: {first}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: not a scenario: nested too deeply") from None
    except OSError as exc:
        raise ScenarioError(f"{str(path)[:200]}: cannot be read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a mapping with 'name' and 'steps'")
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except RecursionError:
        raise ScenarioError(f"{path}: not a scenario: nested too deeply") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or 'scenario'}: {error['msg']}"
                             for error in exc.errors())
        raise ScenarioError(f"{path}: invalid scenario: {problems}") from None

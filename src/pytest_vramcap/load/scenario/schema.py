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

Or a scenario names a LangGraph graph of the user's own instead of steps; the
path is relative to the YAML file, then the attribute to call (:mod:`.graph_source`):

    name: research-graph
    graph: research_graph.py:build      # build(base_url) -> a compiled graph; or a module-level graph, a
                                        # factory, or langgraph.json:NAME (the app's own)
    input: {question: "...", notes: []}
    config: {recursion_limit: 50}       # optional, merged into both passes' config
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ...errors import ScenarioError

__all__ = ["SLO", "Agent", "Expectations", "GraphRef", "Scenario", "Step", "load_scenario", "render_prompt"]


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
    prompt_cache_min: float = Field(default=0.9, ge=0, le=1)
    """On an agent's turns after its first, at least this share of the conversation so far (its previous prompt)
    must come from the engine's prompt cache: the ``prompt_cache`` verdict, which catches slot thrash. A turn
    that kept its slot reuses all of it; one whose slot another agent took still finds the prefix the agents
    share (a long system prompt) in some slot, so the default asks for nearly all: 90%."""


class Agent(_Strict):
    role: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prompt: str = Field(min_length=1)
    system: str | None = None
    max_tokens: int = Field(default=64, ge=1, le=32768)
    turns: int = Field(default=1, ge=1, le=1000)
    """A conversation: after each answer the agent sends its whole history again with one more user message
    (a tool result) of ``turn_tokens`` synthetic tokens, as a tool-calling loop does."""
    turn_tokens: int = Field(default=200, ge=1, le=131072)
    model: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    """The role of the model this agent talks to (``--vramcap-model ROLE=SRC``); None: the first model."""
    retrieve: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    """The role of an embedding model the agent asks before each answer (a retrieval: ``/v1/embeddings`` with a
    query of ``retrieve_tokens`` synthetic tokens), as a RAG agent does."""
    retrieve_tokens: int = Field(default=32, ge=1, le=8192)


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


class GraphRef(_Strict):
    """Where a graph lives: a Python file and the name of a graph, or of a callable that makes one, in it
    (:mod:`.graph_source` says which callables). ``via`` is the langgraph.json entry that named them, if one did."""

    file: Path
    attribute: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    via: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: ValidationInfo) -> Any:
        """``path/to/file.py:graph``, or ``path/to/langgraph.json:NAME``, the path taken against the scenario
        file's directory."""
        if not isinstance(value, str):
            return value
        file, colon, attribute = value.rpartition(":")
        if not colon or not file or not attribute:
            raise ValueError(f"{value!r} is not FILE.py:ATTRIBUTE or langgraph.json:NAME (e.g. agent.py:graph)")
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        if file.endswith(".json"):
            return _langgraph_entry(base / file, attribute)
        return {"file": base / file, "attribute": attribute}

    @field_validator("file")
    @classmethod
    def _python_file(cls, file: Path) -> Path:
        if file.suffix != ".py":
            raise ValueError(f"{str(file)[:200]!r} is not a .py file")
        if not file.is_file():
            raise ValueError(f"graph file {str(file)[:200]!r} does not exist")
        return file.resolve()

    @classmethod
    def of(cls, build: Any) -> GraphRef:
        """Where a builder passed as a callable was defined: what reports name it by (not checked again)."""
        import inspect

        try:
            file = inspect.getsourcefile(build)
        except TypeError:  # a builtin, a C function: nothing to point at
            file = None
        return cls.model_construct(file=Path(file or "<unknown>"), attribute=getattr(build, "__qualname__", "build"))

    def __str__(self) -> str:
        return f"{self.file}:{self.attribute}"


def _langgraph_entry(path: Path, name: str) -> dict[str, Any]:
    """The graph ``name`` of a langgraph.json (LangGraph's own config: ``{"graphs": {"agent": "./agent.py:graph"}}``,
    or ``{"agent": {"path": ...}}``), its path taken against the json file's directory, as LangGraph's CLI does."""
    import json

    shown = str(path)[:200]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{shown!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{shown} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{shown} cannot be read: {type(exc).__name__}") from None
    graphs = data.get("graphs") if isinstance(data, dict) else None
    if not isinstance(graphs, dict):
        raise ValueError(f"{shown} is not a langgraph.json: it has no 'graphs' mapping "
                         f"({{\"graphs\": {{\"agent\": \"./agent.py:graph\"}}}})")
    if name not in graphs:
        known = ", ".join(sorted(str(key) for key in graphs))[:200] or "none"
        raise ValueError(f"{shown} has no graph {name!r} (it names: {known})")
    entry = graphs[name]
    spec = entry.get("path") if isinstance(entry, dict) else entry
    if not isinstance(spec, str):
        raise ValueError(f"{shown}: graph {name!r} is not a \"./file.py:attribute\" string")
    file, colon, attribute = spec.rpartition(":")
    if not colon or not file.endswith(".py") or not attribute:
        raise ValueError(f"{shown}: graph {name!r} is {spec[:100]!r}: vramcap imports graphs from files, "
                         f"\"./file.py:attribute\" (a module path is not supported)")
    return {"file": path.parent / file, "attribute": attribute, "via": f"{path.name}:{name}"}


_STEP_KEYS = ("steps", "inputs", "shared_prefix", "system_tokens", "max_ref_chars")
_GRAPH_KEYS = ("graph", "input", "config")


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    inputs: dict[str, str] = Field(default_factory=dict)
    shared_prefix: str = ""
    """A system-prompt prefix every agent shares (what prompt caching can reuse)."""
    system_tokens: int = Field(default=0, ge=0, le=1_048_576)
    """A shared system prompt of this many synthetic tokens (rules, tool schemas), before ``shared_prefix``."""
    max_ref_chars: int = Field(default=1200, ge=1)
    """Earlier outputs are cut to this many characters when spliced into a prompt."""
    expect: Expectations = Expectations()
    steps: list[Step] = Field(default_factory=list)
    graph: GraphRef | None = None
    """A graph of the user's instead of steps; its requests are recorded by :mod:`.proxy`."""
    input: dict[str, Any] = Field(default_factory=dict)
    """What the graph is invoked with (``graph.ainvoke(input, config)``)."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Merged into the config of both passes; ``max_concurrency`` is the runner's."""

    @model_validator(mode="after")
    def _steps_or_graph(self) -> Scenario:
        given = self.model_fields_set
        if self.graph is None:
            if not self.steps:
                raise ValueError("a scenario needs 'steps' (a list of at least 1 step) or 'graph' (FILE.py:build)")
            stray = [key for key in _GRAPH_KEYS if key in given]
        else:
            stray = [key for key in _STEP_KEYS if key in given]
        if stray:
            kind = "graph" if self.graph is not None else "steps"
            raise ValueError(f"{', '.join(stray)}: not used by a scenario of {kind}")
        if "max_concurrency" in self.config:
            raise ValueError("config.max_concurrency: set by the runner (1 in the sequential pass)")
        return self

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
    def max_width(self) -> int | None:
        """Most agents in one step: the slots a parallel run needs; None for a graph (known once it ran)."""
        return max(len(step.agents) for step in self.steps) if self.steps else None

    def model_roles(self) -> set[str]:
        """Every model role the scenario's agents name (to answer or to retrieve)."""
        return {role for step in self.steps for agent in step.agents for role in (agent.model, agent.retrieve)
                if role is not None}

    def retrieval_roles(self) -> set[str]:
        """The model roles agents only retrieve from (embedding models: no chat to warm them up with)."""
        chats = {agent.model for step in self.steps for agent in step.agents}
        return {agent.retrieve for step in self.steps for agent in step.agents
                if agent.retrieve is not None and agent.retrieve not in chats}

    def width_on(self, role: str | None) -> int:
        """The most agents of one step that talk to the model of ``role`` (None: agents that name none)."""
        return max((sum(agent.model == role for agent in step.agents) for step in self.steps), default=0)

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
        raise ScenarioError(f"{path}: a scenario must be a mapping with 'steps' or a 'graph'")
    data.setdefault("name", path.stem)
    return validated_scenario(data, path.parent, str(path))


def validated_scenario(data: dict[str, Any], base_dir: Path, where: str) -> Scenario:
    """``data`` as a Scenario, its graph file taken against ``base_dir``; any problem is one ScenarioError line
    that starts with ``where``."""
    try:
        return Scenario.model_validate(data, context={"base_dir": base_dir})
    except RecursionError:
        raise ScenarioError(f"{where}: not a scenario: nested too deeply") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or 'scenario'}: "
                             f"{error['msg'].removeprefix('Value error, ')}" for error in exc.errors())
        raise ScenarioError(f"{where}: invalid scenario: {problems}") from None

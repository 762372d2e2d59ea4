"""How much context each agent of a scenario of steps needs, turn by turn, known before any request.

The synthetic parts are exact in tokens (the shared system prompt, each turn's tool result, each answer's
``max_tokens``: outputs have fixed lengths). The user's text (prompts, ``shared_prefix``, an agent's
``system``) is estimated at 4 characters a token (real tokenizers give 4.5-5.3 on English,
docs/benchmarks.md), a reference to an earlier output at its cut (``max_ref_chars``), and each message's
chat-template framing at 8 tokens. An estimate: on the main job's agent-loop it predicts 2,795 tokens at
turn 6 where the engine counted 2,936 (a synthesized model's random answer takes more tokens when it is sent
back than it took to generate). The ``context`` verdict also judges what the engine reports, so a turn the
estimate let through and the engine refused still fails.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from .schema import Agent, Scenario

__all__ = ["CHARS_PER_TOKEN", "MESSAGE_TOKENS", "AgentContext", "agent_contexts"]

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 8
"""A message's template framing (role markers, separators), and the generation prompt's."""
_MARKER_TOKENS = 12
"""The pass marker (``[vramcap pass 1a2b3c4d]``) leading the first message when the prompt cache is on."""


@dataclass(frozen=True)
class AgentContext:
    """What one agent's conversation needs of its slot: ``needs[k]`` tokens at turn ``k + 1`` (its prompt and the
    answer it may write)."""

    label: str
    needs: tuple[int, ...]

    def overflow(self, slot_tokens: int) -> int | None:
        """The first turn (from 1) that needs more than ``slot_tokens``; None if every turn fits."""
        return next((turn for turn, need in enumerate(self.needs, start=1) if need > slot_tokens), None)


def _tokens(chars: int) -> int:
    """The estimate for ``chars`` characters of the user's text, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def _prompt_chars(template: str, max_ref_chars: int, inputs: dict[str, str]) -> int:
    """The rendered prompt's length, each reference to an earlier output at its cut (at most)."""
    size = 0
    for literal, field, _, _ in string.Formatter().parse(template):
        size += len(literal)
        if field is not None:
            size += len(inputs[field][:max_ref_chars]) if field in inputs else max_ref_chars
    return size


def agent_contexts(scenario: Scenario) -> list[AgentContext]:
    """Every agent's need per turn, in step order (a graph's scenario has none: its history is its own)."""
    contexts = []
    for step in scenario.steps:
        for agent in step.agents:
            contexts.append(AgentContext(f"{step.name}.{agent.role}", _needs(scenario, agent)))
    return contexts


def _needs(scenario: Scenario, agent: Agent) -> tuple[int, ...]:
    system = (scenario.system_tokens + _tokens(len(scenario.shared_prefix)) + _tokens(len(agent.system or ""))
              + _MARKER_TOKENS)
    prompt = _tokens(_prompt_chars(agent.prompt, scenario.max_ref_chars, scenario.inputs))
    first = system + prompt + 3 * MESSAGE_TOKENS  # system, user, the generation prompt
    per_turn = agent.max_tokens + agent.turn_tokens + 2 * MESSAGE_TOKENS  # the answer kept, the tool result
    return tuple(first + (turn - 1) * per_turn + agent.max_tokens for turn in range(1, agent.turns + 1))

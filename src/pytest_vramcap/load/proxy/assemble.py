"""A chat completion rebuilt from its stream: what the proxy answers a client that did not stream.

The recording proxy (:mod:`.channels`) asks the engine to stream every chat completion, so it
can time the first token whatever the client asked for. A client that sent
``stream: false`` gets back the object the engine would have sent: the chunks' deltas
merged per choice (text concatenated, tool calls merged by their ``index``), the last
``finish_reason``, and the ``usage`` (plus llama-server's ``timings``) of the stream. (A request for ``logprobs``
is not rebuilt: the proxy passes it through unstreamed.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["CompletionAssembler", "merge_delta"]

_REPLACED = frozenset({"role", "id", "type", "name"})
"""Delta fields that arrive whole (once, or repeated): the rest of a delta's strings arrive in pieces."""


def merge_delta(into: dict[str, Any], delta: dict[str, Any]) -> None:
    """Fold one streamed ``delta`` into ``into``: strings append, objects merge, indexed lists merge by index."""
    for key, value in delta.items():
        if value is None:
            continue
        current = into.get(key)
        if isinstance(value, str) and isinstance(current, str) and key not in _REPLACED:
            into[key] = current + value
        elif isinstance(value, dict):
            merged = current if isinstance(current, dict) else {}
            merge_delta(merged, value)
            into[key] = merged
        elif isinstance(value, list) and all(isinstance(item, dict) and "index" in item for item in value):
            items = current if isinstance(current, list) else []
            for item in value:
                slot = next((old for old in items if old.get("index") == item["index"]), None)
                if slot is None:
                    items.append(slot := {})
                merge_delta(slot, item)
            into[key] = items
        else:
            into[key] = value


class CompletionAssembler:
    """Feed it every chunk of one stream (:meth:`add`); :meth:`completion` is the non-streamed answer."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._tail: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        if not self._head:
            self._head = {key: chunk[key] for key in ("id", "created", "model", "system_fingerprint") if key in chunk}
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            slot = self._choices.setdefault(index, {"index": index, "message": {"role": "assistant", "content": None},
                                                    "finish_reason": None})
            if isinstance(choice.get("delta"), dict):
                merge_delta(slot["message"], choice["delta"])
            if choice.get("finish_reason") is not None:
                slot["finish_reason"] = choice["finish_reason"]
        for key in ("usage", "timings"):
            if chunk.get(key) is not None:
                self._tail[key] = chunk[key]

    def completion(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            for call in choice["message"].get("tool_calls") or []:
                call.pop("index", None)  # a streaming field: non-streamed tool calls carry none
            choices.append(choice)
        return {**self._head, "object": "chat.completion", "choices": choices, **self._tail}

"""Benchmark: what a prompt costs in tokens on synthesized models, real tokenizer against the byte stand-in.

For each shape, writes a 1-layer sparse GGUF with each tokenizer, starts llama-server on it and counts, through
``/tokenize`` and a one-token chat request, the tokens of texts the main job sends: the long-context-pair prompt
(its ~6k-character document) and the first prompts of code-docs-critic and research-fanout.
Prints a Markdown table; the numbers in docs/benchmarks.md come from it.

    .venv/bin/python benchmarks/bench_tokenizer.py [--shapes small qwen2.5-0.5b llama3.2-1b]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from datetime import date
from pathlib import Path

import httpx
import yaml

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.planner.memory import ServerConfig

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def first_prompt(name: str) -> str:
    """The scenario's first agent prompt with its inputs filled in, as the YAML runner sends it."""
    scenario = yaml.safe_load((SCENARIOS / name).read_text(encoding="utf-8"))
    prompt = scenario["steps"][0]["agents"][0]["prompt"]
    return str(prompt.format(**scenario.get("inputs", {})))


def texts() -> dict[str, str]:
    return {"long-context-pair prompt": first_prompt("long-context-pair.yaml"),
            "code-docs-critic first prompt": first_prompt("code-docs-critic.yaml"),
            "research-fanout first prompt": first_prompt("research-fanout.yaml")}


def count(url: str, text: str) -> tuple[int, int]:
    """(tokens of the text alone, prompt tokens of a chat with it as the user message)."""
    tokens = httpx.post(f"{url}/tokenize", json={"content": text}, timeout=60).json()["tokens"]
    chat = httpx.post(f"{url}/v1/chat/completions", timeout=600,
                      json={"messages": [{"role": "user", "content": text}], "max_tokens": 1}).json()
    return len(tokens), int(chat["usage"]["prompt_tokens"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", nargs="+", default=["small", "qwen2.5-0.5b", "llama3.2-1b"])
    args = parser.parse_args()
    samples = texts()
    print(f"{date.today()}, {platform.node()}, {platform.processor() or platform.machine()}\n")
    print("| shape | tokenizer | text | characters | tokens | tokens per character | chat prompt tokens |")
    print("|---|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            for kind in ("real", "stand-in"):
                model = write_gguf(shape, "Q8_0", Path(tmp) / f"{shape}-{kind}.gguf", layers=1, weights="sparse",
                                   tokenizer=kind)  # type: ignore[arg-type]
                with LlamaServer(ServerConfig(parallel=1, ctx_per_agent=8192), model,
                                 EngineOptions(log_dir=Path(tmp), startup_timeout_s=300)) as server:
                    for label, text in samples.items():
                        tokens, prompt = count(server.url, text)
                        print(f"| {shape} | {kind} | {label} | {len(text):,} | {tokens:,} | "
                              f"{tokens / len(text):.2f} | {prompt:,} |")


if __name__ == "__main__":
    main()

"""Synthesized models tokenize like the released ones: llama.cpp's own test vectors and chat templates, through a
real llama-server on 1-layer files of each family (the data region a hole: tokenizing reads no weights)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import httpx
import jinja2
import pytest

from pytest_vramcap.engines.llamacpp import EngineOptions, LlamaServer
from pytest_vramcap.model.gguf_header import read_metadata
from pytest_vramcap.model.llama_cpp_files import models_dir, vocab_files
from pytest_vramcap.model.shapes import SHAPES, get_shape
from pytest_vramcap.model.synth import write_gguf
from pytest_vramcap.model.tokenizer import shape_vocabularies, tokenizer_metadata
from pytest_vramcap.planner.memory import ServerConfig
from tests.helpers import needs_llama_server

# One shape per vocabulary the shapes use (nomic-embed-text: bert-base's WordPiece), plus Qwen3 (Qwen's vocabulary
# under another template).
FAMILIES = ["qwen2.5-0.5b", "llama3.2-1b", "tiny", "phi3-mini", "nomic-embed-text"]
CHATS = ["qwen2.5-0.5b", "qwen3-0.6b", "llama3.2-1b", "phi3-mini", "deepseek-r1-distill-qwen-1.5b"]
RULES = ("You are the reviewer of a small team. Read the coder's patch and the writer's notes, then answer with "
         "a short list of problems, most serious first. Quote the line you mean. Do not rewrite the patch; say what "
         "is wrong and why, in plain English, and stop when you have nothing important left to say. ") * 4


def vector_cases(vocab: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's test vectors for ``vocab``, split as tests/test-tokenizer-0.cpp reads them."""
    directory = models_dir({vocab})
    _, inp, out = vocab_files(vocab)
    texts = (directory / inp).read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = (directory / out).read_text(encoding="utf-8").split("\n")[:len(texts)]
    return [(text, [int(token) for token in line.split()]) for text, line in zip(texts, ids, strict=True)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A llama-server per shape, started on first use and stopped with the module."""
    started: dict[str, LlamaServer] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, shape: str) -> str:
            directory = tmp_path_factory.mktemp(shape)
            model = write_gguf(shape, "Q8_0", directory / f"{shape}.gguf", layers=1, weights="sparse")
            server = LlamaServer(ServerConfig(parallel=1, ctx_per_agent=1024), model,
                                 EngineOptions(log_dir=directory, startup_timeout_s=120))
            server.start()
            started[shape] = server
            self[shape] = server.url
            return server.url

    lazy = Lazy()
    yield lazy
    for server in started.values():
        server.stop()


def tokenize(url: str, text: str, *, special: bool) -> list[int]:
    """``/tokenize`` as test-tokenizer-0 calls llama.cpp (no BOS, special tokens as text), or as llama-server
    tokenizes a chat prompt (``special``: BOS added where the vocabulary asks, control tokens parsed)."""
    answer = httpx.post(f"{url}/tokenize", json={"content": text, "add_special": special, "parse_special": special},
                        timeout=30)
    answer.raise_for_status()
    return answer.json()["tokens"]


def test_every_shape_names_its_tokenizer_and_fits_its_vocabulary() -> None:
    assert shape_vocabularies() == {"qwen2", "llama-bpe", "llama-spm", "phi-3", "bert-bge"}
    for shape in SHAPES.values():
        if shape.tokenizer.vocab:
            tokens = next(v for v in tokenizer_metadata(shape) if v.key == "tokenizer.ggml.tokens").value
            assert len(tokens) == shape.n_vocab, shape.name
        else:
            assert shape.tokenizer.note, f"{shape.name} keeps the stand-in without saying why"


def test_a_short_vocabulary_is_padded_as_llama_cpps_converter_pads_it() -> None:
    # Qwen2.5-7B's embedding has 152,064 rows; the tokenizer has 151,936 tokens
    values = {v.key: v.value for v in tokenizer_metadata(get_shape("qwen2.5-7b"))}
    assert values["tokenizer.ggml.tokens"][151936:151938] == [b"[PAD151936]", b"[PAD151937]"]
    assert values["tokenizer.ggml.token_type"][-1] == 5  # UNUSED
    assert values["tokenizer.ggml.pre"] == "qwen2" and values["tokenizer.ggml.add_bos_token"] is False


def test_the_stand_in_needs_no_files_and_says_what_it_is(tmp_path: Path) -> None:
    path = write_gguf("qwen2.5-0.5b", "Q8_0", tmp_path / "s.gguf", layers=1, weights="sparse", tokenizer="stand-in")
    values = {v.key: v.value for v in read_metadata(path, "tokenizer.")}
    assert values["tokenizer.ggml.model"] == "llama" and values["tokenizer.ggml.tokens"][3] == b"<0x00>"
    assert "tokenizer.chat_template" not in values


@needs_llama_server
@pytest.mark.parametrize("shape", FAMILIES)
def test_llama_cpps_test_vectors_give_the_real_ids(shape: str, servers: dict[str, str]) -> None:
    cases = vector_cases(get_shape(shape).tokenizer.vocab)
    assert len(cases) >= 40
    wrong = [(text, ids) for text, ids in cases if tokenize(servers[shape], text, special=False) != ids]
    assert not wrong, f"{len(wrong)} of {len(cases)} cases differ, first {wrong[0][0]!r}"


def reference_prompt(shape: str, messages: list[dict[str, str]]) -> str:
    """The chat template rendered by jinja2 (as transformers' apply_chat_template does), not by llama.cpp, with
    llama-server's default of thinking on. Where the vocabulary adds a BOS, the template's leading one is dropped, as
    llama-server drops it before it tokenizes."""
    directory = models_dir(shape_vocabularies())
    tokenizer = get_shape(shape).tokenizer
    if tokenizer.template:
        source = (directory / "templates" / f"{tokenizer.template}.jinja").read_text(encoding="utf-8")
    else:
        source = next(v.value for v in read_metadata(directory / vocab_files(tokenizer.vocab)[0], "tokenizer.")
                      if v.key == "tokenizer.chat_template")
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    values = {v.key: v.value for v in tokenizer_metadata(get_shape(shape))}
    tokens = values["tokenizer.ggml.tokens"]
    bos = tokens[values["tokenizer.ggml.bos_token_id"]].decode()
    eos = tokens[values["tokenizer.ggml.eos_token_id"]].decode()
    prompt = environment.from_string(source).render(messages=messages, add_generation_prompt=True, bos_token=bos,
                                                    eos_token=eos, enable_thinking=True)
    return prompt.removeprefix(bos) if values.get("tokenizer.ggml.add_bos_token") else prompt


@needs_llama_server
@pytest.mark.parametrize("shape", CHATS)
def test_a_chats_prompt_tokens_are_the_released_templates_count(shape: str, servers: dict[str, str]) -> None:
    messages = [{"role": "system", "content": RULES}, {"role": "user", "content": "Review the patch below."}]
    url = servers[shape]
    answer = httpx.post(f"{url}/v1/chat/completions", json={"messages": messages, "max_tokens": 1}, timeout=120)
    answer.raise_for_status()
    expected = tokenize(url, reference_prompt(shape, messages), special=True)
    assert answer.json()["usage"]["prompt_tokens"] == len(expected)
    # a real tokenizer: English costs about a quarter of a token per character (the stand-in: more than one)
    assert len(tokenize(url, RULES, special=False)) < 0.3 * len(RULES)


@needs_llama_server
def test_the_chat_templates_are_chatml_and_llama_3s(servers: dict[str, str]) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompts = {shape: httpx.post(f"{servers[shape]}/apply-template", json={"messages": messages}, timeout=30)
               .json()["prompt"] for shape in ("qwen2.5-0.5b", "llama3.2-1b")}
    assert prompts["qwen2.5-0.5b"] == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                       "<|im_start|>assistant\n")
    llama = prompts["llama3.2-1b"]
    assert llama.startswith("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n")
    assert llama.endswith("Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n")

"""The double's HTTP side: Ollama's routes, response shapes, status codes and scheduler rules.

Sources (ollama/ollama fb3076099): server/routes.go (routes, errors, NDJSON), server/sched.go
(parallelism, num_batch, queue, reloads), api/types.go (shapes), openai/openai.go (the /v1
translation), envconfig/config.go (environment).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gguf
import httpx

from pytest_vramcap.engines import find_llama_server, free_port

from .runner import LaunchOptions, LoadError, Runner, log

VERSION = os.environ.get("VRAMCAP_OLLAMA_DOUBLE_VERSION", "0.33.0")
# server/sched.go: ErrMaxQueue (two spaces, as Ollama writes it)
BUSY = "server busy, please try again.  maximum pending requests exceeded"
# server/sched.go Scheduler.load: architectures forced to one slot
SINGLE_SLOT = {"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
               "nemotron_h", "nemotron_h_moe", "nemotron_h_omni"}
MODEL_LAYER = "application/vnd.ollama.image.model"
FOREVER = "2318-11-24T00:00:00Z"  # what a keep_alive of -1 shows as expires_at


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Model:
    """A model as the double's library holds it: a GGUF, or one created FROM another."""

    name: str
    path: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    parent: str = ""

    def info(self) -> dict[str, Any]:
        return dict(gguf_info(str(self.path), self.path.stat().st_mtime_ns))

    def messages(self, body: dict[str, Any]) -> list[Any]:
        """The request's messages after the model's SYSTEM (routes.go: a created model's system prompt leads)."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + list(body.get("messages") or [])

    def details(self, info: dict[str, Any]) -> dict[str, Any]:
        arch = str(info.get("general.architecture", ""))
        file_type = info.get("general.file_type")
        quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if isinstance(file_type, int) else ""
        return {"parent_model": self.parent, "format": "gguf", "family": arch, "families": [arch],
                "parameter_size": "", "quantization_level": quant}


@functools.lru_cache(maxsize=32)
def gguf_info(path: str, mtime_ns: int) -> dict[str, Any]:
    """The GGUF's key/values (Ollama's model_info); read once per file version."""
    reader = gguf.GGUFReader(path)
    return {key: fld.contents() for key, fld in reader.fields.items()
            if not key.startswith(("tokenizer.", "GGUF."))}


def full_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class Scheduler:
    """server/sched.go reduced to one GPU and one loaded model (OLLAMA_MAX_LOADED_MODELS=1)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.created: dict[str, Model] = {}
        self.lock = threading.Lock()
        self.load_lock = threading.Lock()
        self.runner: Runner | None = None
        self.loaded: Model | None = None
        self.loaded_key: tuple[int, int, int] | None = None
        self.semaphore: threading.Semaphore | None = None
        self.pending = 0
        self.max_queue = env_int("OLLAMA_MAX_QUEUE", 512)
        self.binary = os.environ.get("VRAMCAP_LLAMA_SERVER") or str(find_llama_server())

    def find(self, name: str) -> Model | None:
        name = full_name(name)
        if name in self.created:
            return self.created[name]
        path = self._pulled(name)
        return Model(name, path) if path is not None else None

    def _pulled(self, name: str) -> Path | None:
        """A pulled model's GGUF: its manifest (manifest/paths.go, types/model/name.go Filepath) names the
        layer of media type application/vnd.ollama.image.model, stored as a blob."""
        base, tag = name.rsplit(":", 1)
        parts = base.split("/")
        if len(parts) > 3:
            return None
        manifest = self.models_dir.joinpath("manifests", *(["registry.ollama.ai", "library"][: 3 - len(parts)]),
                                            *parts, tag)
        try:
            layers = json.loads(manifest.read_text())["layers"]
        except (OSError, ValueError, KeyError):
            return None
        digests = [layer["digest"] for layer in layers if layer.get("mediaType") == MODEL_LAYER]
        blob = self.blob_path(digests[0]) if digests else None
        return blob if blob is not None and blob.is_file() else None

    def library(self) -> list[Model]:
        """Every pulled model (server/routes.go ListHandler walks the manifests), then the created ones."""
        root = self.models_dir / "manifests"
        pulled = []
        for manifest in sorted(root.glob("*/*/*/*")) if root.is_dir() else []:
            host, namespace, model, tag = manifest.relative_to(root).parts
            short = model if (host, namespace) == ("registry.ollama.ai", "library") else \
                f"{namespace}/{model}" if host == "registry.ollama.ai" else f"{host}/{namespace}/{model}"
            found = self.find(f"{short}:{tag}")
            pulled += [found] if found is not None else []
        return pulled + list(self.created.values())

    def blob_path(self, digest: str) -> Path | None:
        """manifest.BlobsPath: ``sha256:<64 hex>`` -> $OLLAMA_MODELS/blobs/sha256-<hex>; None for a bad digest."""
        algo, _, hexdigest = digest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            return None
        return self.models_dir / "blobs" / f"sha256-{hexdigest}"

    def create(self, name: str, base: Model, parameters: dict[str, Any], system: str | None) -> Model:
        model = Model(full_name(name), base.path, {**base.parameters, **parameters}, system or base.system, base.name)
        with self.lock:
            self.created[model.name] = model
        return model

    def launch_options(self, model: Model, info: dict[str, Any], options: dict[str, Any]) -> LaunchOptions:
        arch = str(info.get("general.architecture", ""))
        params = {**model.parameters, **options}
        num_parallel = max(env_int("OLLAMA_NUM_PARALLEL", 1), 1)
        if arch in SINGLE_SLOT and num_parallel != 1:
            log(f'level=WARN msg="model architecture does not currently support parallel requests" architecture={arch}')
            num_parallel = 1
        # routes.go: request options > Modelfile num_ctx > OLLAMA_CONTEXT_LENGTH > the VRAM tier (4096 below 23 GiB)
        num_ctx = int(params.get("num_ctx") or env_int("OLLAMA_CONTEXT_LENGTH", 0) or 4096)
        trained = int(info.get(f"{arch}.context_length", 0) or 0)
        if trained and num_ctx > trained:  # llm/server.go: clamp to the training context
            log(f'level=WARN msg="requested context size too large for model" num_ctx={num_ctx} n_ctx_train={trained}')
            num_ctx = trained
        num_batch = int(params.get("num_batch") or 0) or self.automatic_batch(num_ctx * num_parallel)
        flash = os.environ.get("OLLAMA_FLASH_ATTENTION", "").lower()
        flash_attention = "on" if flash in ("1", "true") else "off" if flash in ("0", "false") else "auto"
        return LaunchOptions(num_ctx=num_ctx, num_parallel=num_parallel, num_batch=num_batch,
                             num_gpu=int(params.get("num_gpu", -1)),
                             kv_cache_type=os.environ.get("OLLAMA_KV_CACHE_TYPE", ""),
                             flash_attention=flash_attention)

    @staticmethod
    def automatic_batch(effective_ctx: int) -> int:
        """server/sched.go automaticGenerationBatch (no VRAM prediction: every size "fits")."""
        flash = os.environ.get("OLLAMA_FLASH_ATTENTION", "").lower()
        if os.environ.get("VRAMCAP_OLLAMA_DOUBLE_CUDA") == "1" and flash in ("0", "false"):
            return 512
        return 2048 if effective_ctx > 32768 else 1024 if effective_ctx > 4096 else 512

    def acquire(self, model: Model, options: dict[str, Any]) -> tuple[Runner, float]:
        """The runner for ``model`` with a slot held (release with :meth:`release`); loads or reloads it first."""
        started = time.monotonic()
        info = model.info()
        launch = self.launch_options(model, info, options)
        key = (launch.num_ctx, launch.num_batch, launch.num_gpu)
        with self.lock:
            ready = self.loaded is not None and self.loaded.path == model.path and self.loaded_key == key \
                and self.loaded.name == model.name
            if not ready:
                if self.pending >= self.max_queue:
                    raise Busy(BUSY)
                self.pending += 1
        if not ready:
            try:
                with self.load_lock:
                    self._load(model, launch, key)
            finally:
                with self.lock:
                    self.pending -= 1
        assert self.semaphore is not None and self.runner is not None
        self.semaphore.acquire()  # llm/llama_server.go: requests wait without limit for a slot
        return self.runner, time.monotonic() - started

    def release(self) -> None:
        if self.semaphore is not None:
            self.semaphore.release()

    def _load(self, model: Model, launch: LaunchOptions, key: tuple[int, int, int]) -> None:
        if self.loaded is not None and self.loaded.name == model.name and self.loaded_key == key:
            return
        self.unload()
        runner = Runner(self.binary, str(model.path), launch, free_port())
        runner.start()
        try:
            runner.wait_until_running(env_int("VRAMCAP_OLLAMA_DOUBLE_LOAD_TIMEOUT", 300))
        except LoadError:
            runner.stop()
            raise
        self.runner, self.loaded, self.loaded_key = runner, model, key
        self.semaphore = threading.Semaphore(launch.num_parallel)
        log(f'msg="loaded runners" count=1 model={model.name}')

    def unload(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        self.runner = self.loaded = self.loaded_key = self.semaphore = None

    def ps(self) -> list[dict[str, Any]]:
        if self.runner is None or self.loaded is None:
            return []
        size, vram = self.runner.memory_size()
        model = self.loaded
        return [{"name": model.name, "model": model.name, "size": size, "digest": "", "details":
                 model.details(model.info()), "expires_at": FOREVER, "size_vram": vram,
                 "context_length": self.runner.options.num_ctx}]


class Busy(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    server: DoubleServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # routes.go logs requests as GIN lines
        log(f'msg="[GIN] {self.command} {self.path}"')

    # -- plumbing --------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("request body must be a JSON object")
        return value

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _openai_error(self, status: int, message: str) -> None:
        """openai/openai.go NewError: the /v1 error object."""
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routes ----------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        status = 200
        if self.path.startswith("/api/blobs/"):  # routes.go HeadBlobHandler
            path = self.server.scheduler.blob_path(self.path.removeprefix("/api/blobs/"))
            status = 200 if path is not None and path.is_file() else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        sched = self.server.scheduler
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self._json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self._json(200, {"models": [self._listing(model) for model in sched.library()]})
        elif self.path == "/api/ps":
            self._json(200, {"models": sched.ps()})
        else:
            self._error(404, "404 page not found")

    def do_POST(self) -> None:
        if self.path.startswith("/api/blobs/"):
            self.create_blob(self.path.removeprefix("/api/blobs/"))
            return
        routes = {"/api/show": self.show, "/api/create": self.create, "/api/pull": self.pull,
                  "/api/generate": self.generate, "/api/chat": self.chat, "/v1/chat/completions": self.openai_chat}
        route = routes.get(self.path)
        if route is None:
            self._error(404, "404 page not found")
            return
        try:
            body = self._body()
        except ValueError as exc:
            self._error(400, str(exc))
            return
        route(body)

    def create_blob(self, digest: str) -> None:
        """routes.go CreateBlobHandler: 200 if present, 201 once stored, 400 on a digest mismatch."""
        import hashlib

        path = self.server.scheduler.blob_path(digest)
        length = int(self.headers.get("Content-Length") or 0)
        if path is None:
            self.rfile.read(length)
            self._error(400, f"invalid digest format {digest!r}")
            return
        if path.is_file():
            self.rfile.read(length)
            self._json(200, {})
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial, hasher, left = path.with_suffix(".partial"), hashlib.sha256(), length
        with partial.open("wb") as out:
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                hasher.update(data)
                out.write(data)
                left -= len(data)
        got = f"sha256:{hasher.hexdigest()}"
        if got != digest:
            partial.unlink()
            self._error(400, f"digest mismatch, expected {digest!r}, got {got!r}")
            return
        partial.rename(path)
        self._json(201, {})

    def _listing(self, model: Model) -> dict[str, Any]:
        stat = model.path.stat()
        return {"name": model.name, "model": model.name, "modified_at": now_iso(), "size": stat.st_size,
                "digest": "", "details": model.details(model.info())}

    def _model(self, body: dict[str, Any], key: str = "model") -> Model | None:
        name = body.get(key) or body.get("name")
        model = self.server.scheduler.find(str(name)) if name else None
        if model is None:
            self._error(404, f"model '{name}' not found")
        return model

    def show(self, body: dict[str, Any]) -> None:
        model = self._model(body)
        if model is None:
            return
        info = model.info()
        if not body.get("verbose"):  # routes.go: arrays longer than 5 become [] without verbose
            info = {key: ([] if isinstance(value, list) and len(value) > 5 else value) for key, value in info.items()}
        parameters = "\n".join(f"{key} {value}" for key, value in model.parameters.items())
        modelfile = f"FROM {model.path}\n" + "".join(f"PARAMETER {key} {value}\n" for key, value in
                                                    model.parameters.items())
        self._json(200, {"modelfile": modelfile, "parameters": parameters, "template": "{{ .Prompt }}",
                         "system": model.system or "", "details": model.details(info), "model_info": info,
                         "capabilities": ["completion"], "modified_at": now_iso()})

    def create(self, body: dict[str, Any]) -> None:
        """server/create.go: JSON only since 0.5.5; 'from' names the base model."""
        name, base_name = body.get("model") or body.get("name"), body.get("from")
        if not name:
            self._error(400, "model is required")
            return
        if not base_name and not body.get("files"):
            self._error(400, "neither 'from' or 'files' was specified")
            return
        files = body.get("files") or {}
        if files:  # server/create.go: a model from uploaded blobs (how `ollama create` sends a local GGUF)
            ggufs = [digest for file, digest in files.items() if str(file).endswith(".gguf")] \
                if isinstance(files, dict) else []
            blob = self.server.scheduler.blob_path(str(ggufs[0])) if ggufs else None
            if blob is None or not blob.is_file():
                self._error(400, "no GGUF blob among 'files' (upload it to /api/blobs first)")
                return
            uploaded = Model(full_name(str(name)), blob)
            try:  # server/create.go decodes the GGUF (fs/ggml/ggml.go Decode) before it writes a manifest
                uploaded.info()
            except Exception as exc:
                self._error(400, f"invalid model file: {exc}")
                return
            base: Model | None = uploaded
        else:
            base = self.server.scheduler.find(str(base_name))
        if base is None:
            self._error(404, f"model '{base_name}' not found")
            return
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            self._error(400, "parameters must be an object")
            return
        self.server.scheduler.create(str(name), base, parameters, body.get("system"))
        statuses = ["using existing layer", "writing manifest", "success"]
        if body.get("stream") is False:
            self._json(200, {"status": "success"})
            return
        self._start_stream("application/x-ndjson")
        for status in statuses:
            self._chunk(json.dumps({"status": status}).encode() + b"\n")
        self._end_stream()

    def pull(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if self.server.scheduler.find(str(name)) is None:
            self._error(500, "pull model manifest: file does not exist")
            return
        self._json(200, {"status": "success"})

    def generate(self, body: dict[str, Any]) -> None:
        """routes.go GenerateHandler: an empty prompt loads (done_reason "load") or, with keep_alive 0, unloads."""
        model = self._model(body)
        if model is None:
            return
        sched = self.server.scheduler
        if body.get("prompt"):
            self._error(400, "the vramcap Ollama double generates through /api/chat and /v1/chat/completions only")
            return
        if body.get("keep_alive") in (0, "0", "0s"):
            with sched.load_lock:
                sched.unload()
            self._json(200, {"model": model.name, "created_at": now_iso(), "response": "", "done": True,
                             "done_reason": "unload"})
            return
        try:
            _, load_s = sched.acquire(model, body.get("options") or {})
        except Busy as exc:
            self._error(503, str(exc))
            return
        except LoadError as exc:
            self._error(500, str(exc))
            return
        sched.release()
        self._json(200, {"model": model.name, "created_at": now_iso(), "response": "", "done": True,
                         "done_reason": "load", "total_duration": int(load_s * 1e9),
                         "load_duration": int(load_s * 1e9)})

    def _upstream(self, model: Model, body: dict[str, Any], options: dict[str, Any],
                  openai: bool) -> tuple[Runner, float] | None:
        try:
            return self.server.scheduler.acquire(model, options)
        except Busy as exc:
            (self._openai_error if openai else self._error)(503, str(exc))
        except LoadError as exc:
            (self._openai_error if openai else self._error)(500, str(exc))
        return None

    def chat(self, body: dict[str, Any]) -> None:
        """routes.go ChatHandler: NDJSON chunks, then a final one with done_reason and the *_count/*_duration."""
        model = self._model(body)
        if model is None:
            return
        options = body.get("options") or {}
        acquired = self._upstream(model, body, options, openai=False)
        if acquired is None:
            return
        runner, load_s = acquired
        started = time.monotonic()
        request = {"messages": model.messages(body), "stream": True, "stream_options": {"include_usage": True},
                   "max_tokens": options.get("num_predict", -1), "temperature": options.get("temperature", 0.8),
                   "seed": options.get("seed", -1)}
        stream = body.get("stream", True)
        try:
            if stream:
                self._start_stream("application/x-ndjson")
            text, final = "", {}
            for event in sse_events(runner.url, request):
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    message = {"role": "assistant", "content": delta.get("content") or ""}
                    if delta.get("reasoning_content"):
                        message["thinking"] = delta["reasoning_content"]
                    text += message["content"]
                    if stream and (message["content"] or message.get("thinking")):
                        self._chunk(json.dumps({"model": model.name, "created_at": now_iso(), "message": message,
                                                "done": False}).encode() + b"\n")
                    if choice.get("finish_reason"):
                        final["done_reason"] = choice["finish_reason"]
                if isinstance(event.get("timings"), dict):
                    final["timings"] = event["timings"]
            timings = final.get("timings", {})
            done = {"model": model.name, "created_at": now_iso(),
                    "message": {"role": "assistant", "content": "" if stream else text}, "done": True,
                    "done_reason": final.get("done_reason", "stop"),
                    "total_duration": int((time.monotonic() - started + load_s) * 1e9),
                    "load_duration": int(load_s * 1e9),
                    "prompt_eval_count": int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0)),
                    "prompt_eval_duration": int(float(timings.get("prompt_ms", 0)) * 1e6),
                    "eval_count": int(timings.get("predicted_n", 0)),
                    "eval_duration": int(float(timings.get("predicted_ms", 0)) * 1e6)}
            if stream:
                self._chunk(json.dumps(done).encode() + b"\n")
                self._end_stream()
            else:
                self._json(200, done)
        except httpx.HTTPError as exc:  # routes.go: an error after the stream began is an in-band line
            if stream:
                self._chunk(json.dumps({"error": str(exc)}).encode() + b"\n")
                self._end_stream()
            else:
                self._error(500, str(exc))
        finally:
            self.server.scheduler.release()

    def openai_chat(self, body: dict[str, Any]) -> None:
        """openai/openai.go + middleware/openai.go: max_tokens -> num_predict, temperature/top_p default 1.0,
        no num_ctx, reasoning streamed as delta.reasoning, usage only with stream_options.include_usage."""
        name = body.get("model")
        model = self.server.scheduler.find(str(name)) if name else None
        if model is None:
            self._openai_error(404, f"model '{name}' not found")
            return
        acquired = self._upstream(model, body, {}, openai=True)
        if acquired is None:
            return
        runner, _ = acquired
        request = {"messages": model.messages(body), "stream": True, "stream_options": {"include_usage": True},
                   "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0)}
        for key in ("max_tokens", "seed", "stop"):
            if key in body:
                request[key] = body[key]
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        try:
            if not body.get("stream"):
                self._openai_error(400, "the vramcap Ollama double serves streamed /v1 requests only")
                return
            self._start_stream("text/event-stream")
            for event in sse_events(runner.url, request):
                event.pop("timings", None)
                event["model"], event["system_fingerprint"] = model.name, "fp_ollama"
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if "reasoning_content" in delta:
                        delta["reasoning"] = delta.pop("reasoning_content")
                if event.get("usage") and not event.get("choices") and not want_usage:
                    continue
                if not want_usage:
                    event.pop("usage", None)
                self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            self._chunk(b"data: [DONE]\n\n")
            self._end_stream()
        except httpx.HTTPError as exc:
            self._chunk(b"data: " + json.dumps({"error": {"message": str(exc), "type": "api_error"}}).encode()
                        + b"\n\n")
            self._end_stream()
        finally:
            self.server.scheduler.release()


def sse_events(url: str, request: dict[str, Any]) -> Any:
    """The JSON events of llama-server's OpenAI stream (ends at [DONE])."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=request, timeout=httpx.Timeout(600, connect=5)) \
            as response:
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(response.read().decode(errors="replace")[:500], request=response.request,
                                        response=response)
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            yield json.loads(payload)


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], scheduler: Scheduler) -> None:
        super().__init__(address, Handler)
        self.scheduler = scheduler

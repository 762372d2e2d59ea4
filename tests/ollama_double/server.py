"""The double's HTTP side: Ollama's routes, response shapes, status codes and scheduler rules.

Sources (ollama/ollama fb3076099): server/routes.go (routes, errors, NDJSON), server/sched.go
(parallelism, num_batch, queue, reloads, keep_alive expiry), api/types.go (shapes), openai/openai.go (the /v1
translation), envconfig/config.go (environment).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gguf
import httpx

from pytest_vramcap.engines import find_llama_server, free_port
from pytest_vramcap.net import stream_lines

from .options import (
    FOREVER_S,
    OptionError,
    RunnerOptions,
    chat_body,
    chat_message,
    completion_body,
    env_keep_alive,
    merged_options,
    needs_reload,
    openai_request,
    request_keep_alive,
    tool_calls,
)
from .runner import LaunchOptions, LoadError, Runner, log

VERSION = os.environ.get("VRAMCAP_OLLAMA_DOUBLE_VERSION", "0.33.0")
# server/sched.go: ErrMaxQueue (two spaces, as Ollama writes it)
BUSY = "server busy, please try again.  maximum pending requests exceeded"
# llm/llama_server.go: what a request gets when the runner it was sent to is gone
RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource limitations or an internal "
                  "error, check ollama server logs for details")
# server/sched.go Scheduler.load: architectures forced to one slot
SINGLE_SLOT = {"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
               "nemotron_h", "nemotron_h_moe", "nemotron_h_omni"}
MODEL_LAYER = "application/vnd.ollama.image.model"
FOREVER = "2318-11-24T00:00:00Z"  # what a keep_alive of -1 shows as expires_at
DEFAULT_MODELS_PER_GPU = 3  # server/sched.go defaultModelsPerGPU x max(GPUs, 1): the double sees no GPU


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
        """The request's messages, after the model's SYSTEM unless the request starts with its own system
        message (routes.go ChatHandler)."""
        messages = list(body.get("messages") or [])
        first = messages[0].get("role") if messages and isinstance(messages[0], dict) else None
        system = [{"role": "system", "content": self.system}] if self.system and first != "system" else []
        return system + messages

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
    """server/sched.go reduced to one GPU and no VRAM prediction: up to OLLAMA_MAX_LOADED_MODELS runners (default
    defaultModelsPerGPU, 3), keyed by the model's file as sched.go schedulerModelKey keys them (two created models
    of one GGUF share a runner, and reload it when their options differ)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.created: dict[str, Model] = {}
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # a runner's last request finished
        self.load_lock = threading.Lock()
        self.loaded: dict[str, Loaded] = {}
        """The runners by model file (sched.go s.loaded)."""
        self.max_runners = env_int("OLLAMA_MAX_LOADED_MODELS", 0) or DEFAULT_MODELS_PER_GPU
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

    def launch_options(self, model: Model, info: dict[str, Any], options: dict[str, Any],
                       request: dict[str, Any]) -> tuple[LaunchOptions, RunnerOptions]:
        """How ``model`` loads for merged ``options`` (``request``: the request's own, to tell what was asked
        for): the runner's flags and the api.Runner that server/sched.go needsReload compares."""
        arch = str(info.get("general.architecture", ""))
        num_parallel = max(env_int("OLLAMA_NUM_PARALLEL", 1), 1)
        embedding = f"{arch}.pooling_type" in info  # server/images.go: pooling_type makes it an embedding model
        if embedding:  # sched.go load: "Embedding models should always be loaded with parallel=1"
            num_parallel = 1
        if arch in SINGLE_SLOT and num_parallel != 1:
            log(f'msg="model architecture does not currently support parallel requests" architecture={arch}',
                level="WARN")
            num_parallel = 1
        # routes.go: request options > Modelfile num_ctx > OLLAMA_CONTEXT_LENGTH > the VRAM tier (4096 below 23 GiB)
        num_ctx_auto = "num_ctx" not in request and "num_ctx" not in model.parameters \
            and env_int("OLLAMA_CONTEXT_LENGTH", 0) == 0
        num_ctx = max(int(options["num_ctx"] or env_int("OLLAMA_CONTEXT_LENGTH", 0) or 4096), 4)  # sched.go: >= 4
        trained = int(info.get(f"{arch}.context_length", 0) or 0)
        if trained and num_ctx > trained:  # llm/server.go: clamp to the training context
            log(f'msg="requested context size too large for model" num_ctx={num_ctx} n_ctx_train={trained}',
                level="WARN")
            num_ctx = trained
        # routes.go usesAutomaticNumBatch: neither the request nor the model names num_batch
        num_batch_auto = "num_batch" not in request and "num_batch" not in model.parameters
        num_batch = self.automatic_batch(num_ctx * num_parallel) if num_batch_auto else int(options["num_batch"])
        if embedding:  # llm/llama_server.go: the embedding default (2048 capped at num_ctx), at most num_ctx * np
            num_batch = min(min(2048, num_ctx) if num_batch_auto else num_batch, num_ctx * num_parallel)
        flash = os.environ.get("OLLAMA_FLASH_ATTENTION", "").lower()
        flash_attention = "on" if flash in ("1", "true") else "off" if flash in ("0", "false") else "auto"
        launch = LaunchOptions(num_ctx=num_ctx, num_parallel=num_parallel, num_batch=num_batch,
                               num_gpu=int(options["num_gpu"]),
                               kv_cache_type=os.environ.get("OLLAMA_KV_CACHE_TYPE", ""),
                               flash_attention=flash_attention, main_gpu=options["main_gpu"],
                               use_mmap=options["use_mmap"], num_thread=int(options["num_thread"]), embedding=embedding)
        wanted = RunnerOptions(num_ctx=num_ctx, num_batch=num_batch, num_gpu=launch.num_gpu, main_gpu=launch.main_gpu,
                               use_mmap=launch.use_mmap, num_thread=launch.num_thread,
                               draft_num_predict=int(options["draft_num_predict"]), num_ctx_auto=num_ctx_auto,
                               num_batch_auto=num_batch_auto)
        return launch, wanted

    @staticmethod
    def automatic_batch(effective_ctx: int) -> int:
        """server/sched.go automaticGenerationBatch (no VRAM prediction: every size "fits")."""
        flash = os.environ.get("OLLAMA_FLASH_ATTENTION", "").lower()
        if os.environ.get("VRAMCAP_OLLAMA_DOUBLE_CUDA") == "1" and flash in ("0", "false"):
            return 512
        return 2048 if effective_ctx > 32768 else 1024 if effective_ctx > 4096 else 512

    def acquire(self, model: Model, request: dict[str, Any], keep_alive: float | None) -> tuple[Loaded, dict[str, Any],
                                                                                                 float]:
        """The loaded runner for ``model`` with a slot held (give it back with :meth:`release`), the request's
        merged options, and the seconds it took; loads or reloads first (server/sched.go getRunner).
        ``keep_alive``: the request's, in seconds (None: not given)."""
        started = time.monotonic()
        info = model.info()
        options = merged_options(model.parameters, request)
        launch, wanted = self.launch_options(model, info, options, request)
        with self.lock:
            loaded = self._use_loaded(model, wanted, keep_alive, log_reload=False)
            if loaded is None:
                if self.pending >= self.max_queue:
                    raise Busy(BUSY)
                self.pending += 1
        if loaded is None:
            try:
                with self.load_lock:  # sched.go processPending: one load at a time, then look again
                    with self.lock:
                        loaded = self._use_loaded(model, wanted, keep_alive, log_reload=True)
                    if loaded is None:
                        loaded = self._load(model, launch, wanted, keep_alive)
            finally:
                with self.lock:
                    self.pending -= 1
        loaded.semaphore.acquire()  # llm/llama_server.go: requests wait without limit for a slot
        return loaded, options, time.monotonic() - started

    def _use_loaded(self, model: Model, wanted: RunnerOptions, keep_alive: float | None,
                    log_reload: bool) -> Loaded | None:
        """sched.go needsReload + useLoadedRunner (self.lock held): the loaded runner, counted as in use, its
        expiry timer stopped and its session duration the request's keep_alive if it gave one; None to load."""
        loaded = self.loaded.get(str(model.path))
        if loaded is None:
            return None
        # needsReload also reloads a runner that no longer answers (Ping); here: a llama-server that exited.
        exited = loaded.runner.process is None or loaded.runner.process.poll() is not None
        if exited or needs_reload(loaded.options, wanted):
            if log_reload:  # sched.go processPending logs it (at debug level) before expiring the old runner
                log(f'msg=reloading runner="name={loaded.model.name} pid={loaded.pid} '
                    f'options={loaded.options}" wanted="{wanted}"', level="DEBUG")
            return None
        loaded.ref_count += 1
        loaded.disarm()
        if keep_alive is not None:
            loaded.session_s = keep_alive
        return loaded

    def release(self, loaded: Loaded) -> None:
        """sched.go processCompleted: a request is done with the runner; once none holds it, the expiry timer
        starts (or, with a session duration of 0, the runner expires now)."""
        loaded.semaphore.release()
        with self.lock:
            loaded.ref_count -= 1
            if loaded.ref_count <= 0:
                self.idle.notify_all()
                self._arm(loaded)

    def _arm(self, loaded: Loaded) -> None:
        """The expiry timer of an idle runner (self.lock held); sched.go sets expiresAt with it."""
        loaded.disarm()
        loaded.token += 1
        token = loaded.token
        if loaded.session_s == FOREVER_S:
            loaded.expires_at = FOREVER_S
            return
        loaded.expires_at = time.time() + loaded.session_s
        # Go's timers take up to 292 years; Python's waits stop at threading.TIMEOUT_MAX (about as long).
        delay = min(max(loaded.session_s, 0.0), threading.TIMEOUT_MAX)
        timer = threading.Timer(delay, self._expire, args=(loaded, token))
        timer.daemon = True
        loaded.timer = timer
        timer.start()

    def _expire(self, loaded: Loaded, token: int) -> None:
        """sched.go processCompleted, the expired event: unload the runner unless a request took it meanwhile
        (it re-arms the timer when it finishes) or it is already gone."""
        with self.load_lock:
            with self.lock:
                if self.loaded.get(loaded.key) is not loaded or loaded.ref_count > 0 or loaded.token != token:
                    return
                del self.loaded[loaded.key]
                loaded.timer = None
            log(f'msg="timer expired, expiring to unload" model={loaded.model.name} pid={loaded.pid}',
                level="DEBUG")
            loaded.runner.stop()

    def expire(self, model: Model) -> None:
        """sched.go expireRunner (an empty request with keep_alive 0): the runner expires now, or as soon as
        the requests that hold it finish."""
        with self.lock:
            loaded = self.loaded.get(str(model.path))  # sched.go expireRunner: by schedulerModelKey
            if loaded is None:
                return
            loaded.session_s = 0.0
            loaded.disarm()
            if loaded.ref_count <= 0:
                self._arm(loaded)
            loaded.expires_at = time.time()

    def _load(self, model: Model, launch: LaunchOptions, wanted: RunnerOptions, keep_alive: float | None) -> Loaded:
        """sched.go processPending + load (self.load_lock held): a runner of the same file (a reload), or with
        OLLAMA_MAX_LOADED_MODELS runners loaded the one findRunnerToUnload picks, expires once its requests are
        done; then the new one starts, counted as in use by this request."""
        key = str(model.path)
        with self.lock:
            old = self.loaded.get(key)
            if old is None and len(self.loaded) >= self.max_runners:
                old = self._runner_to_unload()
                log(f'msg="max runners achieved, unloading one to make room" runner_count={len(self.loaded)}',
                    level="DEBUG")
        if old is not None:
            self._unload_when_idle(old)
        runner = Runner(self.binary, key, launch, free_port())
        runner.start()
        try:
            runner.wait_until_running(env_int("VRAMCAP_OLLAMA_DOUBLE_LOAD_TIMEOUT", 300))
        except LoadError:
            runner.stop()
            raise
        # sched.go load: the session duration is the request's keep_alive, else OLLAMA_KEEP_ALIVE
        session = keep_alive if keep_alive is not None else env_keep_alive()
        loaded = Loaded(model, runner, wanted, threading.Semaphore(launch.num_parallel), session, ref_count=1)
        with self.lock:
            self.loaded[key] = loaded
            count = len(self.loaded)
        log(f'msg="loaded runners" count={count} model={model.name}')
        return loaded

    def _runner_to_unload(self) -> Loaded:
        """sched.go findRunnerToUnload (self.lock held): by session duration, then model file; the first idle
        one, else the first."""
        ordered = sorted(self.loaded.values(), key=lambda each: (each.session_s, each.key))
        return next((each for each in ordered if each.ref_count <= 0), ordered[0])

    def _unload_when_idle(self, old: Loaded) -> None:
        """The runner expires once the requests that hold it are done (self.load_lock held)."""
        with self.lock:
            old.session_s = 0.0
            old.disarm()
            while old.ref_count > 0:
                self.idle.wait()
            if self.loaded.get(old.key) is old:
                del self.loaded[old.key]
        log(f'msg="unloading runner" model={old.model.name} pid={old.pid}', level="DEBUG")
        old.runner.stop()

    def unload(self) -> None:
        """Stop every runner now, whatever holds it (``ollama serve`` shutting down)."""
        with self.lock:
            loaded, self.loaded = list(self.loaded.values()), {}
            for each in loaded:
                each.disarm()
        for each in loaded:
            each.runner.stop()

    def ps(self) -> list[dict[str, Any]]:
        """server/routes.go PsHandler over sched.go loadedModels, latest expiry first: expires_at is when the idle
        timer fires; before the first request finished, now plus the session duration."""
        with self.lock:
            loaded = [(each, each.expires_at if each.expires_at is not None else time.time() + each.session_s)
                      for each in self.loaded.values()]
        listed = []
        for each, expires in sorted(loaded, key=lambda pair: -pair[1]):
            size, vram = each.runner.memory_size()
            model = each.model
            listed.append({"name": model.name, "model": model.name, "size": size, "digest": "",
                           "details": model.details(model.info()), "expires_at": rfc3339(expires),
                           "size_vram": vram, "context_length": each.runner.options.num_ctx})
        return listed


@dataclass(eq=False)
class Loaded:
    """server/sched.go runnerRef: a loaded runner and what the scheduler keeps about it."""

    model: Model
    runner: Runner
    options: RunnerOptions
    semaphore: threading.Semaphore
    session_s: float  # sessionDuration, seconds (FOREVER_S for a negative keep_alive)
    ref_count: int = 0
    timer: threading.Timer | None = None
    token: int = 0  # which arming of the timer is current: a timer cancelled too late must not unload
    expires_at: float | None = None  # expiresAt, epoch seconds; None until the first request is done

    @property
    def pid(self) -> int | None:
        return self.runner.process.pid if self.runner.process is not None else None

    @property
    def key(self) -> str:
        """sched.go schedulerModelKey: the model's file."""
        return self.runner.model_path

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.token += 1


def rfc3339(epoch_s: float) -> str:
    """A time.Time as encoding/json writes it (RFC 3339); a forever session shows Ollama's year-2318 value."""
    if epoch_s == FOREVER_S:
        return FOREVER
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat().replace("+00:00", "Z")


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
                  "/api/generate": self.generate, "/api/chat": self.chat, "/v1/chat/completions": self.openai_chat,
                  "/api/embed": self.embed, "/v1/embeddings": self.openai_embed}
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

    # -- inference -------------------------------------------------------------------------
    def _keep_alive(self, body: dict[str, Any]) -> tuple[bool, float | None]:
        """(ok, seconds): api/types.go Duration.UnmarshalJSON; a bad keep_alive fails the JSON binding, a 400."""
        try:
            return True, request_keep_alive(body.get("keep_alive"))
        except OptionError as exc:
            self._error(400, str(exc))
            return False, None

    def _schedule(self, model: Model, options: dict[str, Any], keep_alive: float | None,
                  openai: bool = False) -> tuple[Loaded, dict[str, Any]] | None:
        """routes.go scheduleRunner + handleScheduleError: the runner and the merged options, or the error sent."""
        error = self._openai_error if openai else self._error
        try:
            loaded, merged, _ = self.server.scheduler.acquire(model, options, keep_alive)
            return loaded, merged
        except Busy as exc:
            error(503, str(exc))
        except (LoadError, OptionError) as exc:  # a wrongly typed option is Options.FromMap's error: a 500
            error(500, str(exc))
        return None

    def _respond(self, stream: bool, chunks: Iterator[dict[str, Any]],
                 combine: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        """routes.go streamResponse, or the ``stream: false`` branch: NDJSON lines as they come, or one object
        combined from all of them. An error before the first line is its status and {"error"}; after it, an
        in-band {"error"} line."""
        started, collected = False, []
        try:
            for chunk in chunks:
                if not stream:
                    collected.append(chunk)
                    continue
                if not started:
                    self._start_stream("application/x-ndjson")
                    started = True
                self._chunk(json.dumps(chunk).encode() + b"\n")
        except RunnerError as exc:
            if started:
                self._chunk(json.dumps({"error": exc.message}).encode() + b"\n")
                self._end_stream()
            else:
                self._error(exc.status, exc.message)
            return
        if not stream:
            self._json(200, combine(collected) if collected else {})
            return
        if not started:
            self._start_stream("application/x-ndjson")
        self._end_stream()

    def generate(self, body: dict[str, Any]) -> None:
        """routes.go GenerateHandler: an empty prompt loads (done_reason "load") or, with keep_alive 0, unloads;
        a prompt is answered as GenerateResponse NDJSON (one object with ``stream: false``).

        Ollama renders the model's template and sends the text to llama-server's /completion. The double sends
        ``[system?, user prompt]`` to llama-server's /v1/chat/completions instead, which applies the same chat
        template itself (routes.go takes this path too for a model with a native chat template, rendering
        through llama-server's /apply-template first). ``raw: true`` goes to /completion with the prompt as is,
        as Ollama sends it. ``context`` (deprecated) is left out of the answer: Ollama tokenizes its own
        rendered prompt for it, which the double never builds. ``suffix``, ``template``, ``context`` and
        ``images`` in a request are refused rather than silently ignored."""
        checkpoint = time.monotonic()
        model = self._model(body)
        if model is None:
            return
        ok, keep_alive = self._keep_alive(body)
        if not ok:
            return
        sched, name, prompt = self.server.scheduler, str(body.get("model") or body.get("name")), body.get("prompt")
        if not prompt and keep_alive == 0:  # routes.go: expire the runner (sched.go expireRunner)
            sched.expire(model)
            self._json(200, {"model": name, "created_at": now_iso(), "response": "", "done": True,
                             "done_reason": "unload"})
            return
        raw = bool(body.get("raw"))
        if raw and (body.get("template") or body.get("system") or body.get("context")):
            self._error(400, "raw mode does not support template, system, or context")
            return
        unsupported = [key for key in ("suffix", "template", "context", "images") if body.get(key)]
        if prompt and unsupported:
            self._error(400, f"the vramcap Ollama double does not implement {', '.join(unsupported)} on /api/generate")
            return
        acquired = self._schedule(model, body.get("options") or {}, keep_alive)
        if acquired is None:
            return
        loaded, options = acquired
        load_s = time.monotonic() - checkpoint
        try:
            if not prompt:
                self._json(200, {"model": name, "created_at": now_iso(), "response": "", "done": True,
                                 "done_reason": "load", "total_duration": int(load_s * 1e9),
                                 "load_duration": int(load_s * 1e9)})
                return
            num_ctx = loaded.runner.options.num_ctx
            try:
                if raw:
                    request = completion_body(str(prompt), options, num_ctx, body.get("format"))
                    events = sse_events(loaded.runner.url, "/completion", request)
                    chunks = completion_chunks(events, name, checkpoint, load_s)
                else:
                    system = body.get("system") or model.system
                    messages = ([{"role": "system", "content": system}] if system else []) + \
                        [{"role": "user", "content": str(prompt)}]
                    request = chat_body(messages, options, num_ctx, fmt=body.get("format"), think=body.get("think"))
                    events = sse_events(loaded.runner.url, "/v1/chat/completions", request)
                    chunks = (generate_shape(chunk) for chunk in chat_chunks(events, name, checkpoint, load_s))
            except OptionError as exc:  # an invalid format: the runner's error, a 500
                self._error(500, str(exc))
                return
            log(f'msg="llama-server completion request" raw={str(raw).lower()} prompt_len={len(str(prompt))}',
                level="DEBUG")
            self._respond(body.get("stream") is not False, chunks, combine_generate)
        finally:
            sched.release(loaded)

    def chat(self, body: dict[str, Any]) -> None:
        """routes.go ChatHandler: no messages loads (or, with keep_alive 0, unloads); otherwise the body
        llm/llama_server.go llamaServerChatRequest builds goes to llama-server, and the answer comes back as
        NDJSON chunks and a final one with done_reason, the metrics and any tool calls (writeChatResponse
        combines them into one object for ``stream: false``)."""
        checkpoint = time.monotonic()
        model = self._model(body)
        if model is None:
            return
        ok, keep_alive = self._keep_alive(body)
        if not ok:
            return
        sched, name = self.server.scheduler, str(body.get("model") or body.get("name"))
        messages = body.get("messages") or []
        if not messages and keep_alive == 0:
            sched.expire(model)
            self._json(200, {"model": name, "created_at": now_iso(), "message": {"role": "assistant", "content": ""},
                             "done": True, "done_reason": "unload"})
            return
        acquired = self._schedule(model, body.get("options") or {}, keep_alive)
        if acquired is None:
            return
        loaded, options = acquired
        load_s = time.monotonic() - checkpoint
        try:
            if not messages:
                self._json(200, {"model": name, "created_at": now_iso(),
                                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "load"})
                return
            tools = body.get("tools") or []
            try:
                request = chat_body([chat_message(message) for message in model.messages(body)], options,
                                    loaded.runner.options.num_ctx, tools=tools, fmt=body.get("format"),
                                    think=body.get("think"))
            except OptionError as exc:
                self._error(500, str(exc))
                return
            # llm/llama_server.go Chat logs this at debug level; the stop strings too, so a test can see them.
            log(f'msg="llama-server chat request" messages={len(request["messages"])} tools={len(tools)} '
                f"stop={json.dumps(options['stop'])}", level="DEBUG")
            events = sse_events(loaded.runner.url, "/v1/chat/completions", request)
            self._respond(body.get("stream") is not False, chat_chunks(events, name, checkpoint, load_s),
                          functools.partial(combine_chat, tools_given=bool(tools)))
        finally:
            sched.release(loaded)

    def openai_chat(self, body: dict[str, Any]) -> None:
        """openai/openai.go FromChatRequest + middleware/openai.go: max_tokens -> num_predict, temperature/top_p
        default 1.0, stop (a string or a list), tools and response_format passed on, no num_ctx and no
        keep_alive; reasoning streamed as delta.reasoning, usage only with stream_options.include_usage.
        Streamed requests only; llama-server's OpenAI chunks are passed through (renamed where Ollama renames)
        rather than rebuilt from Ollama's ChatResponse, so tool calls stream as llama-server sends them."""
        name = body.get("model")
        model = self.server.scheduler.find(str(name)) if name else None
        if model is None:
            self._openai_error(404, f"model '{name}' not found")
            return
        if not body.get("stream"):
            self._openai_error(400, "the vramcap Ollama double serves streamed /v1 requests only")
            return
        try:
            options, fmt, think = openai_request(body)
        except OptionError as exc:
            self._openai_error(400, str(exc))
            return
        acquired = self._schedule(model, options, None, openai=True)
        if acquired is None:
            return
        loaded, merged = acquired
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        started = False
        try:
            request = chat_body(model.messages(body), merged, loaded.runner.options.num_ctx,
                                tools=body.get("tools"), fmt=fmt, think=think)
            # Ollama builds its usage chunk from the final ChatResponse; passing llama-server's chunks through,
            # the double asks llama-server for its usage chunk instead.
            request["stream_options"] = {"include_usage": True}
            for event in sse_events(loaded.runner.url, "/v1/chat/completions", request):
                event.pop("timings", None)
                event["model"], event["system_fingerprint"] = name, "fp_ollama"
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if "reasoning_content" in delta:
                        delta["reasoning"] = delta.pop("reasoning_content")
                if event.get("usage") and not event.get("choices") and not want_usage:
                    continue
                if not want_usage:
                    event.pop("usage", None)
                if not started:
                    self._start_stream("text/event-stream")
                    started = True
                self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            if not started:
                self._start_stream("text/event-stream")
            self._chunk(b"data: [DONE]\n\n")
            self._end_stream()
        except (RunnerError, OptionError) as exc:
            status, message = (exc.status, exc.message) if isinstance(exc, RunnerError) else (500, str(exc))
            if not started:
                self._openai_error(status, message)
                return
            self._chunk(b"data: " + json.dumps({"error": {"message": message, "type": "api_error"}}).encode()
                        + b"\n\n")
            self._end_stream()
        finally:
            self.server.scheduler.release(loaded)

    def _embeddings(self, model: Model, texts: list[str], body: dict[str, Any],
                    keep_alive: float | None, openai: bool = False) -> dict[str, Any] | None:
        """routes.go EmbedHandler after the input is parsed: the runner scheduled (loaded if need be), each input
        sent to llama-server's /v1/embeddings as llm/llama_server.go Embedding sends it (``{"input": text}``, one
        at a time), answered as api.EmbedResponse; None when an error was sent. The double passes llama-server's
        vectors as they come (Ollama normalizes them) and does not cut an input longer than the context."""
        checkpoint = time.monotonic()
        acquired = self._schedule(model, body.get("options") or {}, keep_alive, openai=openai)
        if acquired is None:
            return None
        loaded, _ = acquired
        load_s = time.monotonic() - checkpoint
        try:
            vectors, tokens = [], 0
            for text in texts:
                vector, count = runner_embedding(loaded.runner.url, text)
                vectors.append(vector)
                tokens += count
        except RunnerError as exc:
            (self._openai_error if openai else self._error)(exc.status, exc.message)
            return None
        finally:
            self.server.scheduler.release(loaded)
        return {"model": body.get("model"), "embeddings": vectors,
                "total_duration": int((time.monotonic() - checkpoint) * 1e9), "load_duration": int(load_s * 1e9),
                "prompt_eval_count": tokens}

    def embed(self, body: dict[str, Any]) -> None:
        """routes.go EmbedHandler: ``input`` a string (an empty one embeds nothing) or a list of strings."""
        model = self._model(body)
        if model is None:
            return
        ok, keep_alive = self._keep_alive(body)
        if not ok:
            return
        texts = embed_inputs(body.get("input"))
        if texts is None:
            self._error(400, "invalid input type")
            return
        answer = self._embeddings(model, texts, body, keep_alive)
        if answer is not None:
            self._json(200, answer)

    def openai_embed(self, body: dict[str, Any]) -> None:
        """middleware/openai.go EmbeddingsMiddleware + openai.go ToEmbeddingList (float encoding only)."""
        name = body.get("model")
        model = self.server.scheduler.find(str(name)) if name else None
        if model is None:
            self._openai_error(404, f"model '{name}' not found")
            return
        raw = [""] if body.get("input") == "" else body.get("input")
        texts = embed_inputs(raw) if raw != [] else None
        if texts is None:
            self._openai_error(400, "invalid input")
            return
        answer = self._embeddings(model, texts, body, None, openai=True)
        if answer is not None:
            tokens = answer["prompt_eval_count"]
            self._json(200, {"object": "list", "model": name,
                             "data": [{"object": "embedding", "embedding": vector, "index": index}
                                      for index, vector in enumerate(answer["embeddings"])],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def embed_inputs(value: Any) -> list[str] | None:
    """api.EmbedRequest.Input as EmbedHandler reads it: a string (none when empty) or a list of strings; None for
    anything else."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(each, str) for each in value):
        return list(value)
    return None


def runner_embedding(url: str, text: str) -> tuple[list[float], int]:
    """llm/llama_server.go Embedding: one input to llama-server's /v1/embeddings; the vector and its prompt
    tokens (usage.prompt_tokens, else tokens_evaluated)."""
    try:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": text}, timeout=httpx.Timeout(600, connect=5))
    except httpx.ConnectError:
        raise RunnerError(500, RUNNER_STOPPED) from None
    except httpx.HTTPError as exc:
        raise RunnerError(500, f"do embedding request: {exc}") from None
    if response.status_code >= 400:
        raise RunnerError(response.status_code, response.text.strip())
    data = response.json()["data"][0]
    return data["embedding"], int(response.json().get("usage", {}).get("prompt_tokens") or
                                   data.get("tokens_evaluated") or 0)


class RunnerError(Exception):
    """What llama-server answered instead of a stream (its status, and the body as Ollama quotes it), or why it
    could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def sse_events(url: str, path: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The JSON events of a llama-server stream (to ``[DONE]`` or its end); llm/llama_server.go's errors."""
    try:
        with httpx.stream("POST", f"{url}{path}", json=request, timeout=httpx.Timeout(600, connect=5)) as response:
            if response.status_code >= 400:  # statusErrorMessage: the body, trimmed, as the error
                raise RunnerError(response.status_code, response.read().decode(errors="replace").strip())
            for line in stream_lines(response):
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                yield json.loads(payload)
    except httpx.ConnectError:
        raise RunnerError(500, RUNNER_STOPPED) from None
    except httpx.HTTPError as exc:
        raise RunnerError(500, f"error reading llama-server response: {exc}") from None


def metrics(timings: dict[str, Any], checkpoint: float, load_s: float) -> dict[str, Any]:
    """routes.go: total_duration since the request came, load_duration until the runner was ready; the counts
    from llama-server's timings (llamaServerTimings: prompt_eval_count is cache_n + prompt_n)."""
    return {"total_duration": int((time.monotonic() - checkpoint) * 1e9), "load_duration": int(load_s * 1e9),
            "prompt_eval_count": int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0)),
            "prompt_eval_duration": int(float(timings.get("prompt_ms", 0)) * 1e6),
            "eval_count": int(timings.get("predicted_n", 0)),
            "eval_duration": int(float(timings.get("predicted_ms", 0)) * 1e6)}


def chat_chunks(events: Iterable[dict[str, Any]], model: str, checkpoint: float,
                load_s: float) -> Iterator[dict[str, Any]]:
    """llm/llama_server.go Chat + routes.go handleNativeChat: a chunk per delta with content or thinking, and
    the final one at finish_reason with done_reason ("length" or "stop"), the metrics, and the tool calls
    accumulated over the stream (arguments as objects)."""
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        if event.get("error"):
            raise RunnerError(500, f"llama-server chat error: {event['error']}")
        choices = event.get("choices") or []
        if not choices:
            continue
        choice = choices[0]
        delta = choice.get("delta") or {}
        message: dict[str, Any] = {"role": "assistant", "content": delta.get("content") or ""}
        if delta.get("reasoning_content"):
            message["thinking"] = delta["reasoning_content"]
        for call in delta.get("tool_calls") or []:
            acc = calls.setdefault(int(call.get("index", 0)), {"id": "", "name": "", "arguments": ""})
            function = call.get("function") or {}
            acc["id"] += call.get("id") or ""
            acc["name"] += function.get("name") or ""
            acc["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason") is not None:
            try:
                found = tool_calls(calls)
            except OptionError as exc:
                raise RunnerError(500, str(exc)) from None
            if found:
                message["tool_calls"] = found
            yield {"model": model, "created_at": now_iso(), "message": message,
                   "done_reason": "length" if choice["finish_reason"] == "length" else "stop", "done": True,
                   **metrics(event.get("timings") or {}, checkpoint, load_s)}
            return
        if message["content"] or "thinking" in message:
            yield {"model": model, "created_at": now_iso(), "message": message, "done": False}


def completion_chunks(events: Iterable[dict[str, Any]], model: str, checkpoint: float,
                      load_s: float) -> Iterator[dict[str, Any]]:
    """llm/llama_server.go Completion + routes.go GenerateHandler: a GenerateResponse per piece of content, and
    the final one at ``stop`` (done_reason "length" for llama-server's stop_type "limit")."""
    for event in events:
        content = event.get("content") or ""
        if not event.get("stop"):
            if content:
                yield {"model": model, "created_at": now_iso(), "response": content, "done": False}
            continue
        yield {"model": model, "created_at": now_iso(), "response": content, "done": True,
               "done_reason": "length" if event.get("stop_type") == "limit" else "stop",
               **metrics(event.get("timings") or {}, checkpoint, load_s)}
        return


def generate_shape(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat chunk as GenerateResponse: the message's content is ``response``, its thinking ``thinking``."""
    message = chunk["message"]
    shaped = {"model": chunk["model"], "created_at": chunk["created_at"], "response": message["content"]}
    if message.get("thinking"):
        shaped["thinking"] = message["thinking"]
    return {**shaped, **{key: value for key, value in chunk.items() if key not in ("model", "created_at", "message")}}


def combine_chat(chunks: list[dict[str, Any]], tools_given: bool) -> dict[str, Any]:
    """routes.go writeChatResponse for ``stream: false``: the last chunk, with all the content and thinking,
    and with tools in the request, all the tool calls."""
    combined = dict(chunks[-1])
    message = dict(combined["message"])
    message["content"] = "".join(chunk["message"].get("content", "") for chunk in chunks)
    thinking = "".join(chunk["message"].get("thinking", "") for chunk in chunks)
    message.pop("thinking", None)
    if thinking:
        message["thinking"] = thinking
    calls = [call for chunk in chunks for call in chunk["message"].get("tool_calls", [])] if tools_given else []
    if calls:
        message["tool_calls"] = calls
    combined["message"] = message
    return combined


def combine_generate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """routes.go GenerateHandler for ``stream: false``: the last chunk with all the response and thinking."""
    combined = dict(chunks[-1])
    combined["response"] = "".join(chunk.get("response", "") for chunk in chunks)
    thinking = "".join(chunk.get("thinking", "") for chunk in chunks)
    combined.pop("thinking", None)
    if thinking:
        combined = {**{k: v for k, v in combined.items() if k != "done"}, "thinking": thinking,
                    "done": combined["done"]}
    return combined


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], scheduler: Scheduler) -> None:
        super().__init__(address, Handler)
        self.scheduler = scheduler

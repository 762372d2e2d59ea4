"""A user's app from ``graph: FILE.py:ATTRIBUTE`` (or ``langgraph.json:NAME``): the file imported, the graph had.

The file is imported as pytest imports a test module in its ``importlib`` mode: under
a name of its own, its directory on ``sys.path`` while it loads (so it can import its
neighbours), once per process. While it loads, and while a factory of it runs, the
environment variables the client SDKs read point at the recording proxy
(:func:`endpoint_environ`), so clients made at module level reach it too; the
variables are put back afterwards.

What ATTRIBUTE names decides how a graph is had from it (:func:`app_of`), by what it is,
then by its signature, as LangGraph's own tooling takes a langgraph.json entry:

* anything with ``ainvoke`` (a compiled graph at module level): the graph itself, one per
  process (:attr:`App.shared`); its clients were made as the module loaded;
* a callable whose first parameter is named like a URL (``base_url``, ``url``, ``host``,
  ``endpoint``, ``api_base``, or ``*_url``...) or annotated ``str``: ``build(base_url)``,
  called with a channel's OpenAI-compatible base URL (ending in ``/v1``);
* a callable whose first parameter is named like a config (``config``, ``cfg``,
  ``*_config``) or annotated ``RunnableConfig`` or a mapping: a LangGraph factory, called
  with a RunnableConfig-like dict (the scenario's ``config``, with ``configurable``);
* a callable that needs no argument: a factory, called with none;
* a callable with one required parameter whose name and annotation say neither: ``build(base_url)``, as
  before factories were taken.

Anything else (a callable with two required parameters, or a keyword-only one) is a
:class:`~pytest_vramcap.errors.GraphError` before anything runs. Whatever goes
wrong is one such line; where the user's code raised, the error also carries the
traceback from the user's first frame on, so it is shown once and without ours around it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, runtime_checkable

from ...errors import GraphError
from .schema import GraphRef

__all__ = ["GRAPH_EXTRA", "App", "Builder", "Graph", "app_of", "endpoint_environ", "factory_config", "load_app",
           "user_traceback"]


@runtime_checkable
class Graph(Protocol):
    """What a runner needs of a user's graph: LangGraph's compiled graphs (and any Runnable) have it."""

    async def ainvoke(self, input: Any, config: Any = None, /) -> Any:
        ...


Builder = Callable[..., Any]
"""What a scenario's ``graph:`` may name besides a graph: ``build(base_url)``, ``factory(config)`` or ``factory()``
(its result is checked to be a :class:`Graph`)."""

GRAPH_EXTRA = "pip install 'pytest-vramcap[graph]'"
_EXTRA_MODULES = ("langgraph", "langchain_openai", "langchain_core", "openai")
"""What the ``graph`` extra installs; a graph file that misses one of them gets the install line."""

PLACEHOLDER_API_KEY = "vramcap"
"""``OPENAI_API_KEY`` where none is set: the SDKs refuse to start without one; the proxy and the engine ignore it."""

_URL_NAMES = frozenset({"url", "base_url", "baseurl", "host", "endpoint", "api_base", "base", "server"})
_URL_SUFFIXES = ("_url", "_host", "_endpoint", "_base")
_ASYNC_FACTORY = "{ref} is async: a factory that returns a graph is needed (async factories are not supported yet)"
_CONFIG_NAMES = frozenset({"config", "cfg", "conf", "configuration", "runnable_config"})
_CONFIG_SUFFIXES = ("_config", "_cfg")

_modules: dict[Path, ModuleType] = {}


def user_traceback(exc: BaseException, files: tuple[Path, ...] = ()) -> str:
    """``exc``'s traceback from the first frame in one of ``files`` (else outside this package) on."""
    package = Path(__file__).resolve().parents[1]
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [i for i, frame in enumerate(frames) if Path(frame.filename).resolve() in files] if files else []
    theirs = mine or [i for i, frame in enumerate(frames)
                      if package not in Path(frame.filename).resolve().parents and "<frozen" not in frame.filename]
    start = theirs[0] if theirs else len(frames)
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[start:]),
             *traceback.format_exception_only(type(exc), exc)]
    return "".join(lines).rstrip("\n")


# ------------------------------------------------------------------ the environment clients read

def endpoint_environ(base_url: str) -> dict[str, str]:
    """The variables that point the client SDKs at ``base_url`` (a channel's ``.../cN/v1``).

    ``OPENAI_BASE_URL`` (openai's clients, and langchain-openai's through them) and ``OPENAI_API_BASE`` (which
    langchain-openai reads first: a value of the user's there would win over ours) get the base URL;
    ``OLLAMA_HOST`` (ollama-python's ``Client``/``AsyncClient``, langchain-ollama's models through them) gets it
    without ``/v1``, where Ollama's native API (``/api/chat``) lives; ``OPENAI_API_KEY`` gets a placeholder only
    where it is unset. Each SDK reads them when a client is made, not when a request is sent."""
    environ = {"OPENAI_BASE_URL": base_url, "OPENAI_API_BASE": base_url,
               "OLLAMA_HOST": base_url.rstrip("/").removesuffix("/v1")}
    if not os.environ.get("OPENAI_API_KEY"):
        environ["OPENAI_API_KEY"] = PLACEHOLDER_API_KEY
    return environ


@contextmanager
def _environment(environ: Mapping[str, str]) -> Iterator[None]:
    """``environ`` set in ``os.environ`` while the block runs, then each variable put back as it was."""
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ------------------------------------------------------------------ the file

def _import(file: Path, environ: Mapping[str, str]) -> ModuleType:
    if file in _modules:
        return _modules[file]
    name = f"vramcap_graph_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise GraphError(f"{file}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(file.parent))
    try:
        with _environment(environ):
            spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        sys.modules.pop(name, None)
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRA_MODULES:
            raise GraphError(f"{file} imports {missing}, which is not installed: the graph scenarios need the "
                             f"'graph' extra ({GRAPH_EXTRA})") from None
        raise GraphError(f"{file} cannot be imported: {type(exc).__name__}: {exc}",
                         user_traceback(exc, (file,))) from None
    except Exception as exc:  # the user's module raised while it loaded: their traceback, once
        sys.modules.pop(name, None)
        raise GraphError(f"{file} cannot be imported: {type(exc).__name__}: {_first_line(exc)}",
                         user_traceback(exc, (file,))) from None
    finally:
        try:
            sys.path.remove(str(file.parent))
        except ValueError:
            pass
    _modules[file] = module
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:300]


# ------------------------------------------------------------------ what the attribute is

Call = Literal["graph", "base_url", "config", "none"]
"""How a graph is had from what ``graph:`` names: it is one, or a callable given the base URL, a config, nothing."""


@dataclass(frozen=True)
class App:
    """What ``graph:`` names, and how a graph is had from it (:meth:`graph`)."""

    ref: GraphRef
    target: Any
    call: Call

    @property
    def shared(self) -> bool:
        """A graph made once, at import: every run and every Locust user of the process invoke the same one, on
        the clients it made then (so through one channel of the proxy, the one its environment named)."""
        return self.call == "graph"

    def graph(self, base_url: str, config: Mapping[str, Any] | None = None) -> Graph:
        """The graph: the module's own, or the callable's result on ``base_url`` (a channel of the proxy). A
        callable runs with the SDKs' variables pointing at ``base_url`` (:func:`endpoint_environ`)."""
        if self.call == "graph":
            return self.target  # type: ignore[no-any-return]
        args: tuple[Any, ...] = {"base_url": (base_url,), "config": (factory_config(config),), "none": ()}[self.call]
        shown_args = repr(base_url) if self.call == "base_url" else "config" if self.call == "config" else ""
        try:
            with _environment(endpoint_environ(base_url)):
                graph = self.target(*args)
        except Exception as exc:
            raise GraphError(f"{self.ref}({shown_args}) raised {type(exc).__name__}: {_first_line(exc)}",
                             user_traceback(exc, (self.ref.file,))) from None
        if inspect.isawaitable(graph):
            if inspect.iscoroutine(graph):
                graph.close()  # never awaited: no warning about it
            raise GraphError(_ASYNC_FACTORY.format(ref=self.ref))  # an awaitable from a sync callable
        if not isinstance(graph, Graph) or not callable(graph.ainvoke):
            raise GraphError(f"{self.ref}({shown_args}) returned a {type(graph).__name__}, not a graph with "
                             f"ainvoke(input, config) (did it forget to .compile()?)")
        return graph


def factory_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The RunnableConfig-like dict a factory gets: the scenario's ``config``, with ``configurable`` (LangGraph's
    server hands its factories the assistant's config the same way)."""
    given = copy.deepcopy(dict(config or {}))
    given["configurable"] = dict(given.get("configurable") or {})
    return given


def app_of(target: Any, ref: GraphRef) -> App:
    """``target`` as an :class:`App`: a graph, or a callable whose signature says what it takes (the module's
    docstring); a GraphError names what does not fit."""
    if isinstance(target, Graph) and callable(target.ainvoke) and not inspect.isclass(target):  # a class makes one
        return App(ref, target, "graph")
    if not callable(target):
        raise GraphError(f"{ref}: is a {type(target).__name__}, neither a graph (no ainvoke) nor a callable that "
                         f"makes one (build(base_url), a factory taking a config or nothing)")
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(type(target).__call__):  # an async __call__
        raise GraphError(_ASYNC_FACTORY.format(ref=ref))  # said now, before a server starts for it
    return App(ref, target, _call_of(target, ref))


def _call_of(target: Callable[..., Any], ref: GraphRef) -> Call:
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: called as a factory, with nothing
        return "none"
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in parameters if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    signature = f"{getattr(target, '__name__', ref.attribute)}({', '.join(p.name for p in parameters)})"
    keyword_only = [p.name for p in required if p.kind == p.KEYWORD_ONLY]
    if keyword_only or len(required) > 1:
        needs = ", ".join(p.name for p in required)
        raise GraphError(f"{ref}: {signature} needs {needs}: vramcap calls it with one argument at most (the base "
                         f"URL, or a config) or none")
    first = positional[0] if positional else None
    if first is not None:
        kind = _parameter_kind(first)
        if kind is not None:
            return kind
    # One required parameter that says neither is today's build(base_url), whatever its name (scenarios written
    # before factories were taken keep working).
    return "base_url" if required else "none"


def _parameter_kind(parameter: inspect.Parameter) -> Literal["base_url", "config"] | None:
    """What a first parameter takes, by its annotation, else by its name; None if neither says."""
    annotation = parameter.annotation
    if annotation is not parameter.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        head = text.split("|")[0].split("[")[0].split(".")[-1].strip().strip("'\"")
        if head == "str":
            return "base_url"
        if "Config" in head or head in ("dict", "Dict", "Mapping", "MutableMapping"):
            return "config"
    name = parameter.name.lower()
    if name in _URL_NAMES or name.endswith(_URL_SUFFIXES) or name.endswith("url"):
        return "base_url"
    if name in _CONFIG_NAMES or name.endswith(_CONFIG_SUFFIXES):
        return "config"
    return None


def load_app(ref: GraphRef, environ: Mapping[str, str]) -> App:
    """What ``ref`` names, imported from its file with ``environ`` set while it loads; a GraphError when it cannot
    be had or is neither a graph nor a callable vramcap can call."""
    target: Any = _import(ref.file, environ)
    for part in ref.attribute.split("."):
        if not hasattr(target, part):
            known = sorted(name for name in vars(_import(ref.file, environ)) if not name.startswith("_"))
            raise GraphError(f"{ref.file} has no attribute {ref.attribute!r} (it defines: "
                             f"{', '.join(known)[:300] or 'nothing public'})")
        target = getattr(target, part)
    return app_of(target, ref)

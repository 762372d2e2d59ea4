"""A user's graph from ``graph: FILE.py:ATTRIBUTE``: the file imported, the builder called.

The file is imported as pytest imports a test module in its ``importlib`` mode: under
a name of its own, its directory on ``sys.path`` while it loads (so it can import its
neighbours), once per process. ``build(base_url)`` gets the recording proxy's
OpenAI-compatible base URL (ending in ``/v1``) and returns anything with
``ainvoke(input, config)``, a compiled LangGraph graph in the common case.

Whatever goes wrong is one :class:`~pytest_vramcap.errors.GraphError` line; where the
user's code raised, the error also carries the traceback from the user's first frame
on, so it is shown once and without ours around it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from ...errors import GraphError
from .schema import GraphRef, Scenario

__all__ = ["GRAPH_EXTRA", "Builder", "Graph", "build_graph", "check_graph", "load_builder", "user_traceback"]


@runtime_checkable
class Graph(Protocol):
    """What a runner needs of a user's graph: LangGraph's compiled graphs (and any Runnable) have it."""

    async def ainvoke(self, input: Any, config: Any = None, /) -> Any:
        ...


Builder = Callable[[str], Any]
"""``build(base_url) -> graph``: what a scenario's ``graph:`` names (its result is checked to be a :class:`Graph`)."""

GRAPH_EXTRA = "pip install 'pytest-vramcap[graph]'"
_EXTRA_MODULES = ("langgraph", "langchain_openai", "langchain_core", "openai")
"""What the ``graph`` extra installs; a graph file that misses one of them gets the install line."""

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


def _import(file: Path) -> ModuleType:
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
        raise GraphError(f"{file} cannot be imported: {type(exc).__name__}: {str(exc)[:300]}",
                         user_traceback(exc, (file,))) from None
    finally:
        try:
            sys.path.remove(str(file.parent))
        except ValueError:
            pass
    _modules[file] = module
    return module


def load_builder(ref: GraphRef) -> Builder:
    """The callable ``ref`` names, imported from its file; a GraphError when it cannot be had."""
    target: Any = _import(ref.file)
    for part in ref.attribute.split("."):
        if not hasattr(target, part):
            known = sorted(name for name in vars(_import(ref.file)) if not name.startswith("_"))
            raise GraphError(f"{ref.file} has no attribute {ref.attribute!r} (it defines: "
                             f"{', '.join(known)[:300] or 'nothing public'})")
        target = getattr(target, part)
    if not callable(target):
        raise GraphError(f"{ref}: is a {type(target).__name__}, not a callable build(base_url)")
    return target  # type: ignore[no-any-return]


def check_graph(scenario: Scenario) -> None:
    """Import a graph scenario's builder now, so a graph that cannot be had fails before any server starts."""
    if scenario.graph is not None:
        load_builder(scenario.graph)


def build_graph(build: Builder, base_url: str, ref: GraphRef) -> Graph:
    """``build(base_url)``, checked to give something with ``ainvoke``; ``ref`` names it in errors."""
    try:
        graph = build(base_url)
    except Exception as exc:
        raise GraphError(f"{ref}({base_url!r}) raised {type(exc).__name__}: {str(exc)[:300]}",
                         user_traceback(exc, (ref.file,))) from None
    if not isinstance(graph, Graph) or not callable(graph.ainvoke):
        raise GraphError(f"{ref}(base_url) returned a {type(graph).__name__}, not a graph with "
                         f"ainvoke(input, config) (did build forget to .compile()?)")
    return graph

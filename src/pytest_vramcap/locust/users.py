"""Locust users that behave like agents: each task runs a whole scenario graph, streaming every request.

A user walks the scenario's super-steps; the agents of one step run as greenlets at
once (the step ends when all of them have), and their outputs feed the next step's
prompts, exactly as load/run/steps.py's parallel pass does. A scenario that names a
graph of the user's runs that graph instead, its requests recorded by the proxy
(:mod:`.graphs`); labels are the graph's ``X-Vramcap-Label`` headers. What a user runs, and where it counts,
is the run's :class:`~.state.VramcapRun` on its Environment. Every request is reported to
Locust as separate entries, so Locust's tables, charts, CSV and HTML show them:

    request_type  name            response_time             response_length
    TTFT          <step>.<role>   time to first token, ms   output tokens
    TPOT          <step>.<role>   time per output token, ms output tokens
    E2E           <step>.<role>   whole request, ms         output tokens (failures land here)
    GRAPH         <scenario>      whole graph, ms           output tokens of the graph

A failure is reported on E2E as ``<kind>: <message>`` (load/measure/failures.py), so Locust's
failure table groups them by kind. The HTTP client is geventhttpclient (what Locust's
FastHttpUser runs on), read line by line so each SSE event is timed when it arrives.

Importing this module imports Locust, which monkey-patches the process for gevent:
only locustfiles and ``vramcap load`` import it, never the pytest plugin.
"""

from __future__ import annotations

import time
from http.client import HTTPException  # geventhttpclient's parse and closed-connection errors
from typing import TYPE_CHECKING, Any

import gevent
from gevent import GreenletExit
from geventhttpclient import URL, HTTPClient
from geventhttpclient.response import HTTPConnectionClosed
from locust import User, task
from locust.exception import StopUser

from ..errors import GraphError
from ..load.measure.client import ChatRequest
from ..load.measure.record import (
    HTTPStatusError,
    RequestError,
    RequestRecord,
    RequestRefused,
    RequestTimeout,
    StreamCut,
)
from ..load.measure.stream import STALE_CONNECTION_RETRIES, ChatStream, fail
from ..load.run.steps import next_turn, scenario_request
from ..load.scenario.schema import Agent, Scenario
from ..types import FailureKind
from .graphs import UserGraph
from .state import vramcap_run

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["AgentGraphUser", "GeventChatClient", "LoadFailure"]

_CHAT_PATH = "/v1/chat/completions"
_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class LoadFailure(Exception):
    """A failed request as Locust's failure table shows it: its kind, then the first line of the error."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(f"{kind}: {message.splitlines()[0][:200] if message else kind}")
        self.kind = kind


class GeventChatClient:
    """One user's connections to an OpenAI-compatible server, for greenlets."""

    def __init__(self, base_url: str, *, model: str | None = None, concurrency: int = 8,
                 connect_timeout_s: float = 10.0, read_timeout_s: float = 300.0,
                 total_timeout_s: float = 600.0, open_requests: dict[int, RequestRecord] | None = None) -> None:
        self.model = model
        self.open_requests = {} if open_requests is None else open_requests
        """Requests sent and not yet ended, by ``id``: the capacity search counts how long they wait."""
        self.total_timeout_s = total_timeout_s
        url = URL(base_url.rstrip("/") + "/")
        self._prefix = url.path.rstrip("/")  # a base URL with a path (a proxy's /ollama) keeps it
        self._http = HTTPClient.from_url(url, concurrency=concurrency, connection_timeout=connect_timeout_s,
                                         network_timeout=read_timeout_s)

    def close(self) -> None:
        self._http.close()

    def chat(self, request: ChatRequest) -> RequestRecord:
        """Stream one chat completion; raises a RequestError kind (with ``.record``) on failure."""
        record = RequestRecord(label=request.label, t_send=time.monotonic())
        self.open_requests[id(record)] = record
        try:
            with gevent.Timeout(self.total_timeout_s, RequestTimeout(f"{request.label or 'request'}: no complete "
                                                                     f"response within {self.total_timeout_s:.0f} s")):
                self._stream(request, record)
        except RequestError as exc:
            raise (exc if exc.record is not None else fail(record, exc)) from None
        except (OSError, HTTPException) as exc:  # refused, reset, closed, a network timeout, a garbled answer
            kind = RequestTimeout if isinstance(exc, TimeoutError) else \
                StreamCut if record.n_chunks or isinstance(exc, HTTPException) else RequestRefused
            raise fail(record, kind(f"{request.label or 'request'}: {type(exc).__name__}: {exc}")) from None
        finally:
            self.open_requests.pop(id(record), None)
        return record

    def _stream(self, request: ChatRequest, record: RequestRecord) -> None:
        import json

        body = json.dumps(request.body(self.model)).encode()
        for attempt in range(1 + STALE_CONNECTION_RETRIES):
            try:
                response = self._http.request("POST", self._prefix + _CHAT_PATH, body=body, headers=_HEADERS)
                break
            except HTTPConnectionClosed:  # before the status line: a stale pooled connection (stream.py)
                if attempt == STALE_CONNECTION_RETRIES:
                    raise
        record.status = response.status_code
        try:
            if response.status_code >= 400:
                raise fail(record, HTTPStatusError(response.status_code,
                                                   response.read().decode("utf-8", errors="replace")))
            stream = ChatStream(record, response.status_code)
            while True:
                line = response.readline(b"\n")
                if not line:
                    break
                if stream.feed(line.decode("utf-8", errors="replace").rstrip("\r\n"), time.monotonic()):
                    break
            stream.finish()
        finally:
            response.release()


class AgentGraphUser(User):
    """Runs its run's scenario again and again, each time as one graph (:class:`~.state.VramcapRun`: the scenario,
    the model requests name, where requests and graphs are counted)."""

    abstract = True
    unreachable_backoff_s = 1.0
    """After a graph that could not connect, the wait before the next: a dead server is not retried in a tight loop
    (49,480 refused requests in 17 s from two users, before), and the run still ends at its time."""
    _unreachable = False

    def wait_time(self) -> float:
        return self.unreachable_backoff_s if self._unreachable else 0.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise ValueError("no host: pass --host URL, or --vram-profile to start a server")
        self.vramcap = run = vramcap_run(environment)
        self.chat_client: GeventChatClient | None = None
        self.user_graph: UserGraph | None = None
        self.graph_error: GraphError | None = None
        scenario = run.scenario
        if scenario is not None and scenario.graph is not None:
            try:
                self.user_graph = UserGraph(scenario, self.host, run.model, hosts=run.graph_hosts,
                                            on_start=self._opened, on_end=self._report, on_forget=self._closed)
            except GraphError as exc:
                self._cannot_build(exc)
        else:
            width = (scenario.max_width if scenario else None) or 1
            self.chat_client = GeventChatClient(self.host, model=run.model, concurrency=width,
                                                open_requests=run.open_requests, read_timeout_s=run.request_timeout_s)

    def _cannot_build(self, exc: GraphError) -> None:
        """The graph's build raised: the first time in this run, the run stops (its end shows the error)."""
        self.graph_error = exc
        if self.vramcap.build_error is None:
            self.vramcap.build_error = exc
            runner = self.environment.runner
            if runner is not None:
                gevent.spawn(runner.quit)  # not from here: the runner is spawning this user

    def on_stop(self) -> None:
        if self.chat_client is not None:
            self.chat_client.close()
        if self.user_graph is not None:
            self.user_graph.close()

    @task
    def graph(self) -> None:
        scenario = self.vramcap.scenario
        if scenario is None:
            raise ValueError("the run's scenario is not set (VramcapRun.scenario)")
        if scenario.graph is not None:
            self._run_user_graph(scenario)
            return
        state: dict[str, Any] = dict(scenario.inputs)
        start, tokens = time.monotonic(), 0
        failure: LoadFailure | None = None
        for step in scenario.steps:
            requests = [scenario_request(scenario, step.name, agent, state, seed=42) for agent in step.agents]
            jobs = [gevent.spawn(self._converse, request, step.name, agent)
                    for request, agent in zip(requests, step.agents, strict=True)]
            try:
                gevent.joinall(jobs)
            except GreenletExit:  # the runner stops this user: its agents stop with it, not after on_stop
                gevent.killall(jobs)
                raise
            outputs = {}
            for agent, request, job in zip(step.agents, requests, jobs, strict=True):
                record, spoken = job.value if job.successful() and job.value is not None else (RequestRecord(
                    label=request.label, t_send=start, error=f"{type(job.exception).__name__}: {job.exception}",
                    error_kind="internal"), 0)  # a bug of ours, not the server's: gevent has printed its traceback
                outputs[agent.role] = record.text if record.ok else ""
                tokens += spoken
                if not record.ok and failure is None:
                    failure = LoadFailure(record.error_kind or "server_error", record.error or "")
            state[step.name] = outputs
            if failure is not None:
                break  # later steps would read missing outputs
        wall = time.monotonic() - start
        self.vramcap.graph_ended(wall, failure is None)
        self._unreachable = failure is not None and failure.kind == "connection"
        self._fire("GRAPH", scenario.name, wall * 1000, tokens, failure)

    def _run_user_graph(self, scenario: Scenario) -> None:
        """One invocation of the user's graph; its requests were reported as each ended (:meth:`_report`)."""
        if self.user_graph is None:  # its build raised: one failed GRAPH entry, and this user stops
            self._fire("GRAPH", scenario.name, 0.0, 0, LoadFailure("graph_error", str(self.graph_error)))
            raise StopUser()
        start = time.monotonic()
        records, error = self.user_graph.invoke()
        wall = time.monotonic() - start
        failed = next((record for record in records if not record.ok), None)
        failure = LoadFailure(failed.error_kind or "server_error", failed.error or "") if failed is not None else \
            LoadFailure("graph_error", f"{type(error).__name__}: {error}") if error is not None else None
        self.vramcap.graph_ended(wall, failure is None)
        self._unreachable = failure is not None and failure.kind == "connection"
        self._fire("GRAPH", scenario.name, wall * 1000, sum(record.n_out for record in records), failure)

    def _converse(self, request: ChatRequest, step: str, agent: Agent) -> tuple[RequestRecord, int]:
        """Every turn of one agent's conversation (one request unless it has ``turns``), each reported as it ends:
        the last turn's record (the one that failed, if one did) and the tokens of all its answers."""
        record, tokens = self._ask(request), 0
        for turn in range(2, agent.turns + 1):
            tokens += record.n_out
            if not record.ok:
                return record, tokens
            request = next_turn(request, record.text, step, agent, turn)
            record = self._ask(request)
        return record, tokens + record.n_out

    def _ask(self, request: ChatRequest) -> RequestRecord:
        assert self.chat_client is not None  # a scenario of steps has one
        try:
            record = self.chat_client.chat(request)
        except RequestError as exc:
            record = exc.record or RequestRecord(label=request.label, t_send=time.monotonic(), error=str(exc),
                                                 error_kind="server_error")
        self._report(record)
        return record

    def _opened(self, record: RequestRecord) -> None:
        self.vramcap.open_requests[id(record)] = record

    def _closed(self, record: RequestRecord) -> None:
        self.vramcap.open_requests.pop(id(record), None)

    def _report(self, record: RequestRecord) -> None:
        """A request that ended, ours or a graph's: counted, and fired as Locust's TTFT/TPOT/E2E entries."""
        self.vramcap.open_requests.pop(id(record), None)
        if self.user_graph is not None and self.user_graph.stopped:
            return  # cut because the run stopped this user, as a scenario of steps' requests are: not reported
        if record.ok and record.n_out == 0:  # an answer with no token is no answer for an agent
            record.error, record.error_kind = "the answer streamed no token", "no_output"
        self.vramcap.request_ended(record)
        if not record.ok:  # failures land on E2E, by kind
            elapsed = (record.e2e if record.e2e is not None else time.monotonic() - record.t_send) * 1000
            self._fire("E2E", record.label, elapsed, record.n_out,
                       LoadFailure(record.error_kind or "server_error", record.error or ""))
            return
        if record.ttft is not None:
            self._fire("TTFT", record.label, record.ttft * 1000, record.n_out)
        if record.tpot is not None:
            self._fire("TPOT", record.label, record.tpot * 1000, record.n_out)
        self._fire("E2E", record.label, (record.e2e or 0.0) * 1000, record.n_out)

    def _fire(self, metric: str, name: str, ms: float, tokens: int, failure: Exception | None = None) -> None:
        self.environment.events.request.fire(request_type=metric, name=name, response_time=ms,
                                             response_length=tokens, exception=failure, context={})

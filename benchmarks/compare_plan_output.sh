#!/usr/bin/env bash
# `vramcap plan` on 14 configs (tables, --json, solving, offload, --compare, exit codes), this tree against REF:
# a refactor must leave every byte the same. Usage: benchmarks/compare_plan_output.sh [REF]   (default: HEAD~1)
set -euo pipefail
ref=${1:-HEAD~1}
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/.venv/bin/python
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git -C "$root" archive "$ref" src | tar -x -C "$old"
configs=(
  "--model qwen2.5-14b:Q4_K_M --profile rtx4080 --agents 4 --ctx-per-agent 8192"
  "--model qwen2.5-14b:Q4_K_M --profile 16gb --agents 4 --ctx-per-agent 8192 --json"
  "--model qwen2.5-14b:Q4_K_M --profile 16gb --agents 4"
  "--model qwen2.5-14b:Q4_K_M --profile 16gb --ctx-per-agent 16384"
  "--model qwen2.5-14b:Q4_K_M --profile 16gb --agents 4 --ctx-per-agent 32768"
  "--model qwen2.5-7b:Q8_0 --profile 12gb --agents 3 --ctx-per-agent 8192 --kv-cache q8_0"
  "--model qwen2.5-14b:Q4_K_M --profile 16gb --agents 2 --ctx-per-agent 8192 --flash-attn off"
  "--model qwen3-30b-a3b:Q4_K_M --profile 24gb --agents 4 --ctx-per-agent 8192 --json"
  "--model gpt-oss-20b --profile 16gb --agents 2 --ctx-per-agent 16384"
  "--model gemma3-12b:Q4_K_M --profile 16gb --agents 4 --ctx-per-agent 8192 --kv-cache q4_0"
  "--model llama3.1-8b:Q4_K_M --profile rtx4060ti-16gb --agents 4 --ctx-per-agent 8192 --ubatch 1024"
  "--model qwen2.5-14b:Q4_K_M --profile 16gb --agents 4 --ctx-per-agent 8192 --gpu-layers 30 --json"
  "--model tiny:Q8_0 --profile 16gb --agents 4 --ctx-per-agent 2048"
  "--model qwen2.5-14b:Q4_K_M --profile rtx4080 --agents 4 --ctx-per-agent 8192 --compare ctx=16384"
)
plans() {  # every config's output and exit code, with the package from $1 first on the path
  for config in "${configs[@]}"; do
    echo "### $config"
    # shellcheck disable=SC2086  # the config is a list of words
    (cd "$old" && PYTHONPATH=$1 "$python" -m pytest_vramcap.cli plan $config 2>&1) && echo "exit 0" || echo "exit $?"
  done
}
plans "$old/src" > "$old/before.txt"
plans "$root/src" > "$old/after.txt"
if cmp -s "$old/before.txt" "$old/after.txt"; then
  echo "identical: ${#configs[@]} configs, $(wc -l < "$old/after.txt") lines, against $ref"
else
  diff "$old/before.txt" "$old/after.txt" | head -40
  exit 1
fi

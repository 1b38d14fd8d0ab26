#!/usr/bin/env bash
# Checks the CUDA fast path and measures its throughput, then the CPU collection modes on
# the same machine's cores (about 11 minutes in all):
#   bash benchmarks/gpu_check.sh            # results also go to $OUT (default /tmp/out)
# Needs a machine with an NVIDIA GPU and a CUDA build of torch installed. If .whl/ holds
# wheels (torchrl, tensordict, vmas and their pure-Python dependencies), they are
# installed into /tmp/site first, for a machine without a package index; step 4 also needs
# pettingzoo and mpe2 (skipped if they are missing).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchrl, vmas; print(torch.__version__, torchrl.__version__, vmas.__version__, torch.cuda.get_device_name())"

# 1. Correctness of the CUDA fast path against eager (a few seconds).
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"

# 2. Throughput: BenchMARL recipe and 6,000 envs x 4 epochs, tutorial pipeline in the same
#    call; scaling over num_envs up to 30,000 with peak device memory.
timeout 270 python3 benchmarks/throughput.py --device cuda --settings benchmarl large \
  --iterations 3 --repeats 1 --scaling 60 600 6000 30000 \
  --ours-flag perf.cudagraph_update=true --ours-flag perf.shifted_gae=true \
  --ours-flag perf.cudagraph_policy=true 2>&1 | tee "$OUT/throughput.md"

# 2b. bfloat16 hidden layers (perf.precision; auto is float32 on a GPU) as its own row, in
#     a call of its own without CUDA graphs, so that a failure cannot cost step 2's table.
timeout 100 python3 benchmarks/throughput.py --device cuda --settings benchmarl \
  --iterations 3 --repeats 1 --scaling --arm perf.precision=bfloat16 2>&1 \
  | tee "$OUT/throughput_bfloat16.md"

# 3. The CPU defaults (collection overlapped with the update, bfloat16 hidden layers where
#    the CPU has them) and each switched off, against the tutorial pipeline at two threads,
#    at the tutorial settings.
timeout 130 python3 benchmarks/throughput.py --settings tutorial --iterations 4 --repeats 1 \
  --threads 1 --tutorial-threads 2 --scaling --arm collector.overlap=off \
  --arm perf.precision=float32 2>&1 | tee "$OUT/throughput_cpu_defaults.md"

# 4. PettingZoo MPE simple_spread stepped by 1, 2 and 4 worker processes.
if python3 -c "import mpe2" 2>/dev/null; then
  timeout 80 python3 benchmarks/workers.py --workers 1 2 4 --repeats 1 --iterations 3 2>&1 \
    | tee "$OUT/workers.md"
fi

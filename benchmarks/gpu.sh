#!/usr/bin/env bash
# The whole-tile benchmark on a GPU: a generated Sentinel-2 tile (10980², 30 % orbit-edge
# no-data, cloud blocks, glaciers on 5 %) through the real deploy with the published-size
# GlaViTU (patch 384, seeded random weights: speed does not depend on their values), in
# float32 and bfloat16, each case in a fresh process, batch size chosen by deploy's
# activation budget (4096 MiB on a GPU). Prints one JSON line per case on stdout: windows
# computed, wall time, model time, the reader's wait (reader_wait_s, reader_wait_share) and
# peak RSS. Goal (issue 22): the full tile in <= 30 s on one H100 in bfloat16, reader wait
# < 10 % of wall time. It stops after LIMIT_S (570 s); generating the stack took 54 s on the
# 2-core development machine, and is done once per WORKDIR.
#
#   benchmarks/gpu.sh                      # full size, cases full and roi
#   SIZE=1500 CASES="full skip-empty roi" benchmarks/gpu.sh
#   WORKDIR=/scratch/tile benchmarks/gpu.sh   # reuse a generated stack
#
# Without a GPU it runs the same on the CPU (slowly at full size: use SIZE=1500 to check it).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
SIZE=${SIZE:-10980}
CASES=${CASES:-full roi}
PRECISIONS=${PRECISIONS:-float32 bfloat16}
WORKDIR=${WORKDIR:-$(mktemp -d -t glaviz-gpu-bench-XXXX)}
LIMIT_S=${LIMIT_S:-570}

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
else
    echo "gpu.sh: no nvidia-smi: running on the CPU" >&2
fi
echo "gpu.sh: size $SIZE, cases: $CASES, precisions: $PRECISIONS, work folder $WORKDIR" >&2

# shellcheck disable=SC2086  # CASES and PRECISIONS are word lists
timeout "$LIMIT_S" "$PYTHON" benchmarks/tile.py --size "$SIZE" --workdir "$WORKDIR" \
    --model published --precision $PRECISIONS --cases $CASES --no-projection --jsonl

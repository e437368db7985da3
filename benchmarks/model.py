"""Benchmark one published-size GlaViTU window: the model as built, folded, and one op at a time.

For each precision it times the forward pass of one 384² window (batch 1, optical + dem, seeded
random weights: speed does not depend on their values) in a fresh process per variant, because
TensorFlow's thread pools are fixed per process:

- ``plain``: the model as built (batch norm after each convolution), TensorFlow's default pools;
- ``folded``: batch norm folded into the convolutions (``glaviz.model.folding``);
- ``folded+sequential``: folded, and one inter-op thread (what ``load_for_inference`` does on
  CPUs).

It reports seconds per window (best of ``--repeats`` after a warm-up call), windows/s, the speed-up
over ``plain`` and the maximum absolute difference of the probabilities from ``plain``.

    python benchmarks/model.py [--precision float32 bfloat16] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ("plain", "folded", "folded+sequential")

_CHILD = """
import json, sys, time
import numpy as np
variant, precision, repeats, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import tensorflow as tf
if variant.endswith("sequential"):
    tf.config.threading.set_inter_op_parallelism_threads(1)
from glaviz.engine.inference import dtype_policy, policy_scope
from glaviz.model.folding import fold_batch_norm
from glaviz.model.glavitu import GlaViTUConfig, build_glavitu
config = GlaViTUConfig.create(features=["optical", "dem"])
with policy_scope(dtype_policy(precision)):
    _, model = build_glavitu(config)
rng = np.random.default_rng(0)
for w in model.weights:
    value = rng.normal(0, 0.05, w.shape)
    if "moving_variance" in w.path:
        value = np.abs(value) + 1.0
    w.assign(value.astype(np.float32))
if variant != "plain":
    fold_batch_norm(model)
x = {g: tf.constant(rng.normal(size=(1, 384, 384, n)).astype(np.float32))
     for g, n in config.feature_groups.items()}
forward = tf.function(lambda batch: model(batch, training=False))
start = time.perf_counter()
probs = forward(x).numpy()
first = time.perf_counter() - start
times = []
for _ in range(repeats):
    start = time.perf_counter()
    forward(x).numpy()
    times.append(time.perf_counter() - start)
np.save(out, probs)
print(json.dumps({"first_call_s": first, "s_per_window": min(times)}))
"""


def run_variant(variant: str, precision: str, repeats: int, workdir: Path) -> dict:
    out = workdir / f"{variant}-{precision}.npy"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, variant, precision, str(repeats), str(out)],
        capture_output=True,
        text=True,
        env=_environment(),
    )
    if done.returncode:
        raise SystemExit(f"{variant} {precision} failed:\n{done.stderr[-3000:]}")
    return {"variant": variant, "precision": precision, **json.loads(done.stdout.splitlines()[-1])}


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="glaviz-model-bench-") as tmp:
        workdir = Path(tmp)
        for precision in args.precision:
            for variant in VARIANTS:
                row = run_variant(variant, precision, args.repeats, workdir)
                plain = np.load(workdir / f"plain-{precision}.npy")
                probs = np.load(workdir / f"{variant}-{precision}.npy")
                row["windows_per_s"] = 1.0 / row["s_per_window"]
                row["max_abs_diff_from_plain"] = float(np.abs(probs - plain).max())
                rows.append(row)
                base = next(r for r in rows if r["precision"] == precision)
                row["speedup_over_plain"] = base["s_per_window"] / row["s_per_window"]
                if not args.json:
                    print(
                        f"{precision:9s} {variant:18s} {row['s_per_window']:.3f} s/window  "
                        f"{row['windows_per_s']:.2f} windows/s  ×{row['speedup_over_plain']:.3f}  "
                        f"first call {row['first_call_s']:.2f} s  "
                        f"max |Δp| {row['max_abs_diff_from_plain']:.2e}",
                        flush=True,
                    )
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()

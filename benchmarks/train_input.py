"""Throughput of ``glaviz train``'s input pipeline, in patches/s, with a trivial model.

The pipeline (random windows read from the benchmark HDF5, numpy augmentation in a Python
generator, ``tf.data`` batching and prefetch) feeds a model that costs next to nothing (one 1×1
convolution per head), so ``model.fit`` runs at the speed the pipeline delivers. Patches are
384 × 384 with optical + DEM and the published default augmentations (flips, rotations,
crop-and-scale), batch 8, read from a generated float64 benchmark file like the published one.

Compare the figure with what one training step of the paper-size GlaViTU consumes: batch 8 per
step, so the pipeline must deliver 8 / (step time) patches/s.

    python benchmarks/train_input.py [--steps 40] [--tiles 4] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def trivial_model(keras, data):
    from glaviz.published.groups import GROUP_BANDS

    p = data.patch_size
    inputs = {g: keras.Input((p, p, GROUP_BANDS[g]), name=g) for g in data.features}
    x = keras.layers.Concatenate()(list(inputs.values()))
    ds = keras.layers.Conv2D(2, 1, activation="softmax", name="deepsupervision")(x)
    out = keras.layers.Conv2D(2, 1, activation="softmax", name="output")(x)
    model = keras.Model(inputs, {"deepsupervision": ds, "output": out})
    model.compile("adam", loss="categorical_crossentropy")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=1152)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-train-input-"))

    from glaviz.config import TrainConfig
    from glaviz.config.loading import validate
    from glaviz.samples import make_benchmark_splits
    from glaviz.training.data import open_training_data, train_dataset
    from glaviz.util.tf import import_tensorflow

    splits = make_benchmark_splits(
        workdir, tiles=(args.tiles, 1, 1), tile_size=args.tile_size, patch_size=384, seed=3
    )
    config = validate(
        TrainConfig,
        {
            "output": str(workdir / "run"),
            "data": {"train": str(splits["train"]), "val": str(splits["val"])},
            "training": {"batch_size": 8},
        },
    )
    import_tensorflow()
    import keras

    data = open_training_data(config)
    try:
        ds = train_dataset(data, config, seed=0)
        model = trivial_model(keras, data)
        model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # build, trace, warm the cache
        t = time.perf_counter()
        model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - t
    finally:
        data.close()
    rate = args.steps * 8 / seconds
    print(
        f"{args.steps} steps of 8 patches of 384² (optical+dem, flips/rotations/crop-and-scale): "
        f"{seconds:.1f} s, {rate:.1f} patches/s = one batch of 8 every {8 / rate:.2f} s"
    )


if __name__ == "__main__":
    main()

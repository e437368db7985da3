"""Region-vector ("bias") optimisation: adapt a region-encoding model to an unseen scene.

A region-encoding GlaViTU takes a one-hot region vector. For a scene outside the training regions,
the paper learns a bias vector ``b`` whose softmax is fed as the location input, choosing ``b`` to
minimise the mean prediction entropy on random windows of the scene: the model is most decisive
with the region mixture that suits the scene. Following the published procedure: ``b`` starts at
ones, Adam with learning rate 1e-4, one epoch ≈ scene area / (patch² × batch) steps, and training
stops once the squared change of ``b`` over an epoch stays below 1e-8 for 5 epochs (at most 100).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import ConfigError, InputError
from glaviz.published.location import region_names
from glaviz.runs.atomic import write_json_atomic
from glaviz.runs.outputs import refuse_existing
from glaviz.util.progress import Progress

log = logging.getLogger(__name__)

#: Published stopping rule: squared change of ``b`` per epoch below this for ``PATIENCE`` epochs.
TOLERANCE = 1e-8
PATIENCE = 5
EPSILON = 1e-6


@dataclass
class BiasResult:
    """The optimised region vector and how much it lowered the mean entropy."""

    path: Path
    region_vector: list[float]
    regions: list[str]
    entropy_before: float
    entropy_after: float
    epochs: int
    steps_per_epoch: int
    stopped_early: bool


class _WindowSampler:
    """Seeded random windows of the stack, normalised for the model (zero outside the scene)."""

    def __init__(self, dataset: Any, layout: Any, model: Any, seed: int) -> None:
        self.dataset = dataset
        self.layout = layout
        self.model = model
        self.patch = model.config.patch_size
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> dict[str, np.ndarray]:
        from rasterio.windows import Window

        from glaviz.published.normalisation import normalise_bands

        p, h, w = self.patch, self.dataset.height, self.dataset.width
        out: dict[str, list[np.ndarray]] = {g: [] for g in self.model.groups}
        for _ in range(size):
            # As published: top-left corners drawn so the window lies inside the scene.
            row = int(self.rng.integers(0, max(h - p, 1)))
            col = int(self.rng.integers(0, max(w - p, 1)))
            window = Window(col, row, min(p, w - col), min(p, h - row))
            raw = self.layout.read_bands(self.dataset, self.model.groups, window=window)
            for group, bands in raw.items():
                full = np.zeros((p, p, len(bands)), np.float32)
                normalise_bands(
                    group, bands, self.model.stats, out=full[: window.height, : window.width]
                )
                out[group].append(full)
        return {g: np.stack(v) for g, v in out.items()}


def mean_entropy(probs: Any) -> Any:
    """Mean base-2 Shannon entropy of softmax outputs (the published objective)."""
    import tensorflow as tf

    n_classes = tf.cast(tf.shape(probs)[-1], probs.dtype)
    entropy = -tf.reduce_sum(probs * tf.math.log(probs + EPSILON) / tf.math.log(n_classes), -1)
    return tf.reduce_mean(entropy)


def optimise_bias(
    *,
    stack: Path,
    weights: str,
    output: Path,
    epochs: int = 100,
    seed: int = 0,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    overwrite: bool = False,
    progress: bool = False,
) -> BiasResult:
    """Learn the region vector that minimises mean prediction entropy on ``stack``."""
    import rasterio
    import tensorflow as tf

    from glaviz.engine.loading import load_for_inference
    from glaviz.published.stack_layout import StackLayout

    output = Path(output)
    refuse_existing(output, overwrite=overwrite)
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise ConfigError(
            f"--epochs and --batch-size must be at least 1 and the learning rate positive "
            f"(got {epochs}, {batch_size}, {learning_rate})"
        )
    model = load_for_inference(weights)
    config = model.config
    if config.location_encoding != "region":
        kind = "no location input" if not config.uses_location else "coordinate encoding"
        raise ConfigError(
            f"{model.path.name} is not a region-encoding model (it has {kind}); optimise-bias "
            "adapts the region vector of region-encoding models such as 'region-encoding'"
        )
    size = config.location_size
    regions = region_names(size, known=model.region_names)

    try:
        dataset = rasterio.open(stack)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open stack {stack}: {exc}") from None
    with dataset:
        layout = StackLayout.read(dataset)
        layout.require(model.groups)
        p = config.patch_size
        steps = max(1, int(dataset.height * dataset.width / p**2 / batch_size + 0.5))
        tf.random.set_seed(seed)
        sampler = _WindowSampler(dataset, layout, model, seed)
        held_out = _WindowSampler(dataset, layout, model, seed + 1).batch(batch_size)

        bias = tf.Variable(tf.ones((size,)), dtype=tf.float32, name="region_bias")
        optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate)
        infer = model.model

        def location_for(batch: dict[str, Any]) -> Any:
            n = tf.shape(next(iter(batch.values())))[0]
            return tf.tile(tf.nn.softmax(bias)[None], [n, 1])

        @tf.function(reduce_retracing=True)
        def step(batch: dict[str, Any]) -> Any:
            with tf.GradientTape() as tape:
                loss = mean_entropy(infer({**batch, "location": location_for(batch)}))
            optimizer.apply_gradients([(tape.gradient(loss, bias), bias)])
            return loss

        @tf.function(reduce_retracing=True)
        def evaluate(batch: dict[str, Any]) -> Any:
            return mean_entropy(infer({**batch, "location": location_for(batch)}))

        entropy_before = float(evaluate(held_out))
        quiet_epochs, done, stopped = 0, 0, False
        with Progress(progress, total=epochs, description="optimise-bias") as bar:
            for done in range(1, epochs + 1):
                previous = bias.numpy().copy()
                for _ in range(steps):
                    step(sampler.batch(batch_size))
                change = float(np.sum((bias.numpy() - previous) ** 2))
                quiet_epochs = quiet_epochs + 1 if change < TOLERANCE else 0
                bar.advance()
                log.info("epoch %d: squared change of the bias %.3g", done, change)
                if quiet_epochs >= PATIENCE:
                    stopped = True
                    break
        entropy_after = float(evaluate(held_out))

    vector = [float(v) for v in tf.nn.softmax(bias).numpy().astype(np.float64)]
    result = BiasResult(
        path=output,
        region_vector=vector,
        regions=regions,
        entropy_before=entropy_before,
        entropy_after=entropy_after,
        epochs=done,
        steps_per_epoch=steps,
        stopped_early=stopped,
    )
    write_json_atomic(
        output,
        {
            "region_vector": vector,
            "regions": regions,
            "entropy_before": entropy_before,
            "entropy_after": entropy_after,
            "bias": [float(v) for v in bias.numpy()],
            "epochs": done,
            "steps_per_epoch": steps,
            "stopped_early": stopped,
            "seed": seed,
            "weights": str(model.path),
            "stack": str(Path(stack).resolve()),
        },
    )
    return result

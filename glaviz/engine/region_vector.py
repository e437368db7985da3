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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.errors import ConfigError, InputError
from glaviz.published.location import region_names
from glaviz.runs.atomic import write_json_atomic
from glaviz.runs.outputs import refuse_existing
from glaviz.util.progress import Progress

if TYPE_CHECKING:
    from glaviz.config.optimise_bias import OptimiseBiasConfig

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

    def summary(self) -> str:
        """The line ``glaviz optimise-bias`` prints."""
        return (
            f"mean entropy {self.entropy_before:.4f} → {self.entropy_after:.4f} after "
            f"{self.epochs} epochs; region vector written to {self.path}"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz optimise-bias``, less the ``status`` the CLI adds."""
        return {
            "outputs": [str(self.path)],
            "region_vector": self.region_vector,
            "regions": self.regions,
            "counts": {
                "epochs": self.epochs,
                "entropy_before": self.entropy_before,
                "entropy_after": self.entropy_after,
            },
        }


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


def optimise_bias(config: OptimiseBiasConfig, *, progress: bool = False) -> BiasResult:
    """Learn the region vector that minimises mean prediction entropy on ``config.stack``.

    Four stages: load the model (it must be region-encoding), open the stack, descend on the
    entropy, write the vector. The bounds on epochs, batch size and learning rate are the
    configuration model's, checked once when it is built.
    """
    output = Path(config.output)
    from glaviz.util.tf import import_tensorflow

    refuse_existing(output, overwrite=config.overwrite)
    preflight(config)
    import_tensorflow()  # only now: everything checkable without it has been checked
    model, regions = _region_model(config.weights)
    with _open_stack(config.stack) as dataset:
        descent = _descend(dataset, model, config, progress=progress)
    result = BiasResult(
        path=output,
        region_vector=descent.vector,
        regions=regions,
        entropy_before=descent.entropy_before,
        entropy_after=descent.entropy_after,
        epochs=descent.epochs,
        steps_per_epoch=descent.steps_per_epoch,
        stopped_early=descent.stopped_early,
    )
    write_json_atomic(output, _vector_file(result, descent, config, weights=model.path))
    return result


@dataclass(frozen=True)
class _Descent:
    """What the optimisation reached: the bias, its softmax and the entropy on held-out windows."""

    bias: list[float]
    vector: list[float]
    entropy_before: float
    entropy_after: float
    epochs: int
    steps_per_epoch: int
    stopped_early: bool


def preflight(config: OptimiseBiasConfig) -> None:
    """Every check of an optimise-bias run that needs no TensorFlow: the weights resolve and are
    region-encoding (read without TensorFlow), and the stack opens, has a CRS, reflectance and
    the model's feature groups (the checks deploy makes of the same stack)."""
    from glaviz.engine.loading import inspect_weights
    from glaviz.engine.reader import inspect_stack

    weights = inspect_weights(config.weights)
    _require_region_encoding(weights.config, weights.path)
    inspect_stack(config.stack).layout.require(weights.groups)


def _require_region_encoding(config: Any, path: Path) -> None:
    if config.location_encoding != "region":
        kind = "no location input" if not config.uses_location else "coordinate encoding"
        raise ConfigError(
            f"{path.name} is not a region-encoding model (it has {kind}); optimise-bias "
            "adapts the region vector of region-encoding models such as 'region-encoding'"
        )


def _region_model(weights: str) -> tuple[Any, list[str]]:
    """The model (loaded for inference) and the names of its regions; refuses other models."""
    from glaviz.engine.loading import load_for_inference

    model = load_for_inference(weights)
    config = model.config
    _require_region_encoding(config, model.path)
    return model, region_names(config.location_size, known=model.region_names)


def _open_stack(stack: Path) -> Any:
    """The open feature stack (a rasterio dataset), or an :class:`InputError` that names it."""
    import rasterio

    try:
        return rasterio.open(stack)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open stack {stack}: {exc}") from None


def _steps_per_epoch(height: int, width: int, patch: int, batch_size: int) -> int:
    """The published epoch: about as many windows as fit the scene once, at least one step."""
    return max(1, int(height * width / patch**2 / batch_size + 0.5))


def _descend(dataset: Any, model: Any, config: OptimiseBiasConfig, *, progress: bool) -> _Descent:
    """Adam on the bias ``b`` (starting at ones) against the mean entropy of random windows."""
    import tensorflow as tf

    from glaviz.published.stack_layout import StackLayout

    layout = StackLayout.read(dataset)
    layout.require(model.groups)
    size, seed, batch_size = model.config.location_size, config.seed, config.batch_size
    steps = _steps_per_epoch(dataset.height, dataset.width, model.config.patch_size, batch_size)
    tf.random.set_seed(seed)
    sampler = _WindowSampler(dataset, layout, model, seed)
    held_out = _WindowSampler(dataset, layout, model, seed + 1).batch(batch_size)

    bias = tf.Variable(tf.ones((size,)), dtype=tf.float32, name="region_bias")
    optimizer = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
    step, evaluate = _entropy_functions(model.model, bias, optimizer)

    entropy_before = float(evaluate(held_out))
    epochs, stopped = _run_epochs(
        lambda: step(sampler.batch(batch_size)),
        bias,
        steps=steps,
        epochs=config.epochs,
        progress=progress,
    )
    entropy_after = float(evaluate(held_out))
    return _Descent(
        bias=[float(v) for v in bias.numpy()],
        vector=[float(v) for v in tf.nn.softmax(bias).numpy().astype(np.float64)],
        entropy_before=entropy_before,
        entropy_after=entropy_after,
        epochs=epochs,
        steps_per_epoch=steps,
        stopped_early=stopped,
    )


def _entropy_functions(infer: Any, bias: Any, optimizer: Any) -> tuple[Any, Any]:
    """Compiled ``step(batch)`` (one Adam update of ``bias``, returns the loss) and
    ``evaluate(batch)`` (the mean entropy), both feeding softmax(``bias``) as the location."""
    import tensorflow as tf

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

    return step, evaluate


def _run_epochs(
    step: Callable[[], Any], bias: Any, *, steps: int, epochs: int, progress: bool
) -> tuple[int, bool]:
    """Epochs of ``steps`` steps until the published stopping rule holds or ``epochs`` ran out.

    Returns the epochs run and whether the stopping rule ended them.
    """
    quiet_epochs, done = 0, 0
    with Progress(progress, total=epochs, description="optimise-bias") as bar:
        for done in range(1, epochs + 1):
            previous = bias.numpy().copy()
            for _ in range(steps):
                step()
            change = float(np.sum((bias.numpy() - previous) ** 2))
            quiet_epochs = quiet_epochs + 1 if change < TOLERANCE else 0
            bar.advance()
            log.info("epoch %d: squared change of the bias %.3g", done, change)
            if quiet_epochs >= PATIENCE:
                return done, True
    return done, False


def _vector_file(
    result: BiasResult, descent: _Descent, config: OptimiseBiasConfig, *, weights: Path
) -> dict[str, Any]:
    """The region vector JSON: what ``glaviz deploy --region-vector`` reads, with provenance."""
    return {
        "region_vector": result.region_vector,
        "regions": result.regions,
        "entropy_before": result.entropy_before,
        "entropy_after": result.entropy_after,
        "bias": descent.bias,
        "epochs": result.epochs,
        "steps_per_epoch": result.steps_per_epoch,
        "stopped_early": result.stopped_early,
        "seed": config.seed,
        "weights": str(weights),
        "stack": str(Path(config.stack).resolve()),
    }

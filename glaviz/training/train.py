"""``glaviz train``: the published GlaViTU recipe on benchmark HDF5 splits, resumable.

Layout of the output folder (``output`` in the config)::

    model.glaviz        best validation IoU so far (the result; deploy/predict accept it)
    best_loss.glaviz    lowest validation loss so far
    log.csv             one row per epoch (loss, IoU, learning rate, …)
    tensorboard/        TensorBoard event files
    config.json         the resolved configuration the run started with
    state/state.json    resume point: completed epochs, best scores, file names
    state/epoch-NNNN.*  model and optimizer variables of the last completed epoch (HDF5)

Every file is written under a temporary name and renamed, and ``state.json`` is replaced only
after the weights it names are complete, so an interrupted run always resumes from a consistent
epoch. Nothing is pickled: weights and optimizer slots are plain HDF5 datasets.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import ConfigError, InputError, WeightsError
from glaviz.model.glavitu import GlaViTUConfig
from glaviz.published.location import region_names
from glaviz.runs.atomic import atomic_path, write_json_atomic
from glaviz.runs.outputs import output_exists
from glaviz.runs.records import write_record
from glaviz.training.config import TrainConfig
from glaviz.training.data import TrainingData
from glaviz.training.record import RECORD_NAME, train_record

log = logging.getLogger("glaviz.training")

BUNDLE_NAME = "model.glaviz"
BEST_LOSS_NAME = "best_loss.glaviz"
STATE_DIR = "state"
STATE_FILE = "state.json"
#: Architecture fields that must agree between a starting checkpoint and the config.
_ARCH_FIELDS = (
    "patch_size",
    "n_classes",
    "location_size",
    "width",
    "embedding",
    "blocks",
    "heads",
    "mlp",
    "decoder_filters",
    "unet_steps",
    "unet_filters",
)


@dataclass
class TrainResult:
    """What a training run produced."""

    output: Path
    bundle: Path  #: ``model.glaviz``: the best validation IoU
    best_loss_bundle: Path
    epochs_run: int  #: epochs completed in total (including those before a resume)
    best_epoch: int
    best_val_iou: float
    best_val_loss: float
    seconds: float  #: wall time of this invocation
    history: list[dict[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Architecture and starting weights


def model_config(config: TrainConfig, *, location_size: int = 0) -> GlaViTUConfig:
    """The GlaViTU architecture a training config asks for."""
    overrides: dict[str, Any] = {
        "patch_size": config.model.patch_size,
        "location_encoding": config.model.location_encoding,
        "train_dropout": config.model.train_dropout,
        "dropout": config.model.dropout,
    }
    if location_size:
        overrides["location_size"] = location_size
    return GlaViTUConfig.create(
        features=list(config.data.features), preset=config.model.preset, **overrides
    )


def _describe(arch: GlaViTUConfig) -> str:
    size = "paper" if arch.width == 64 and arch.blocks == 12 else "custom"
    if arch.width == 16 and arch.blocks == 2:
        size = "tiny"
    return f"{arch.describe()}, patch {arch.patch_size}, {size} size"


def _check_same_architecture(found: GlaViTUConfig, wanted: GlaViTUConfig, source: str) -> None:
    diffs = [
        f"{name} {getattr(found, name)} vs {getattr(wanted, name)}"
        for name in _ARCH_FIELDS
        if getattr(found, name) != getattr(wanted, name)
    ]
    if list(found.feature_groups.values()) != list(wanted.feature_groups.values()):
        diffs.insert(0, "feature groups")
    if diffs:
        raise WeightsError(
            f"cannot fine-tune from {source}: it holds a model for {_describe(found)}, the config "
            f"asks for {_describe(wanted)} ({'; '.join(diffs)}); set data.features, "
            "model.preset, model.patch_size and model.location_encoding to match the weights"
        )


@dataclass(frozen=True)
class StartingPoint:
    """Fine-tuning weights, resolved and inspected before any model is built."""

    path: Path
    spec: str
    architecture: GlaViTUConfig
    region_names: list[str] | None
    is_bundle: bool


def inspect_starting_point(spec: str) -> StartingPoint:
    """Resolve ``training.weights`` (registry name, .h5 or .glaviz) and read its architecture."""
    from glaviz.model.bundle import is_bundle, read_metadata
    from glaviz.model.checkpoint import inspect_checkpoint
    from glaviz.registry.catalogue import resolve_weights

    resolved = resolve_weights(spec)
    if is_bundle(resolved.path):
        meta = read_metadata(resolved.path)
        return StartingPoint(
            resolved.path, spec, meta.architecture, meta.region_names, is_bundle=True
        )
    info = inspect_checkpoint(resolved.path)
    arch = info.config
    names = None
    known = resolved.entry.region_order if resolved.entry is not None else None
    if arch.location_encoding == "region" and (known or info.location_size):
        # The one naming convention (glaviz.published.location): the registry's order, else the
        # published order for a location input of the published size.
        names = region_names(arch.location_size, known=known)
        if not known and names[0].startswith("region"):
            names = None  # placeholders: let the training data name the slots
    return StartingPoint(resolved.path, spec, arch, names, is_bundle=False)


def load_starting_weights(train_model: Any, start: StartingPoint, wanted: GlaViTUConfig) -> None:
    """Load fine-tuning weights into ``train_model``; the architecture must match exactly."""
    from glaviz.model.bundle import load_bundle
    from glaviz.model.checkpoint import assign_checkpoint

    _check_same_architecture(start.architecture, wanted, start.spec)
    if start.is_bundle:
        source = load_bundle(start.path).train_model
        train_model.set_weights(source.get_weights())
    else:
        assign_checkpoint(train_model, start.path)


# --------------------------------------------------------------------------------------------------
# Resume state (HDF5 + JSON, no pickle)


def _write_variables(path: Path, variables: list[Any]) -> None:
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for i, v in enumerate(variables):
                ds = f.create_dataset(f"{i:05d}", data=np.asarray(v))
                ds.attrs["path"] = v.path

    with atomic_path(path) as tmp:
        write(tmp)


def _read_variables(path: Path, variables: list[Any], what: str) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            stored = [f[k] for k in sorted(f)]
            if len(stored) != len(variables):
                raise WeightsError(
                    f"{what}: {path} holds {len(stored)} tensors, the run needs {len(variables)}; "
                    "was the config changed since the run started?"
                )
            values = []
            for ds, v in zip(stored, variables, strict=True):
                if tuple(ds.shape) != tuple(v.shape):
                    raise WeightsError(
                        f"{what}: {ds.attrs.get('path', ds.name)} has shape {ds.shape}, the run "
                        f"needs {tuple(v.shape)}; was the config changed since the run started?"
                    )
                values.append(ds[()])
    except OSError as exc:
        raise WeightsError(f"{what}: {path} is damaged ({exc}); start a new run") from None
    for value, v in zip(values, variables, strict=True):
        v.assign(value)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data)


def read_state(output: Path) -> dict[str, Any] | None:
    """The resume state of a run folder, or None if it has none."""
    path = output / STATE_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is damaged ({exc}); start a new run elsewhere") from None


# --------------------------------------------------------------------------------------------------
# Callbacks


def _make_checkpointer(
    *,
    keras: Any,
    output: Path,
    metadata: Callable[[dict[str, Any]], Any],
    state: dict[str, Any],
) -> Any:
    """Keras callback saving the best bundles and the resume state after every epoch."""
    from glaviz.model.bundle import save_bundle

    class Checkpointer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best_weights: list[np.ndarray] | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            done = epoch + 1
            iou = float(logs.get("val_output_iou", float("nan")))
            loss = float(logs.get("val_loss", float("nan")))
            row = {"epoch": done, **{k: float(v) for k, v in logs.items()}}
            state["history"].append(row)
            if np.isfinite(iou) and iou > state["best_val_iou"]:
                state.update(best_val_iou=iou, best_epoch=done)
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
                save_bundle(
                    output / BUNDLE_NAME,
                    self.model,
                    metadata({"epoch": done, "val_iou": iou, "val_loss": loss}),
                    overwrite=True,
                )
            if np.isfinite(loss) and loss < state["best_val_loss"]:
                state.update(best_val_loss=loss, best_loss_epoch=done)
                save_bundle(
                    output / BEST_LOSS_NAME,
                    self.model,
                    metadata({"epoch": done, "val_iou": iou, "val_loss": loss}),
                    overwrite=True,
                )
            self._save_state(done)

        def _save_state(self, done: int) -> None:
            folder = output / STATE_DIR
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"epoch-{done:04d}"
            _write_variables(folder / f"{stem}.weights.h5", list(self.model.weights))
            _write_variables(folder / f"{stem}.optimizer.h5", list(self.model.optimizer.variables))
            previous = state.get("checkpoint")
            state.update(epoch=done, checkpoint=stem)
            _write_json(folder / STATE_FILE, state)
            if previous and previous != stem:
                for suffix in (".weights.h5", ".optimizer.h5"):
                    (folder / f"{previous}{suffix}").unlink(missing_ok=True)

    return Checkpointer()


def _make_tensorboard(tf: Any, keras: Any, logdir: Path) -> Any:
    """Per-epoch scalars in TensorBoard's layout (``train/``, ``validation/``, ``epoch_*``).

    Keras' own TensorBoard callback needs the ``tensorboard`` package even to write scalars;
    ``tf.summary.write`` with the scalar plugin's metadata does not, so event files are written
    on any install and read by TensorBoard wherever it is installed.
    """
    metadata = tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
    ).SerializeToString()

    class EpochScalars(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.writers = {
                "train": tf.summary.create_file_writer(str(logdir / "train")),
                "validation": tf.summary.create_file_writer(str(logdir / "validation")),
            }

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = dict(logs or {})
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(
                optimizer.learning_rate(optimizer.iterations)
                if callable(optimizer.learning_rate)
                else optimizer.learning_rate
            )
            for key, value in logs.items():
                split = "validation" if key.startswith("val_") else "train"
                tag = "epoch_" + key.removeprefix("val_")
                with self.writers[split].as_default():
                    tf.summary.write(tag, float(value), step=epoch + 1, metadata=metadata)
            for writer in self.writers.values():
                writer.flush()

        def on_train_end(self, logs: Any = None) -> None:
            for writer in self.writers.values():
                writer.close()

    return EpochScalars()


def _make_progress(keras: Any, *, epochs: int, steps: int, initial_epoch: int) -> Any:
    """glaviz's progress bar per epoch plus one summary line per epoch, on stderr."""
    from glaviz.util.progress import Progress

    def title(epoch: int) -> str:
        return f"epoch {epoch}/{epochs}"

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = Progress(
                True, total=steps, description=title(initial_epoch + 1), status=True
            )
            self.bar.__enter__()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.bar.reset(total=steps, description=title(epoch + 1))

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("loss")
            self.bar.status(f"loss {float(loss):.4f}" if loss is not None else "loss …")
            self.bar.advance()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            self.bar.print(
                f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, "
                f"IoU {logs.get('output_iou', float('nan')):.4f}; val loss "
                f"{logs.get('val_loss', float('nan')):.4f}, val IoU "
                f"{logs.get('val_output_iou', float('nan')):.4f}"
            )

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.__exit__(None, None, None)

    return EpochProgress()


# --------------------------------------------------------------------------------------------------
# The run


def _strategy(tf: Any) -> Any:
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    # Several logical CPU devices exist only when someone split the CPU on purpose
    # (tf.config.set_logical_device_configuration): mirror over them, as the tests do.
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:
        log.info("training on %d logical CPU devices with MirroredStrategy", len(cpus))
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def jit_compile_setting(*, replicas: int, mixed_precision: bool) -> bool | str:
    """Keras' ``jit_compile`` for ``compile()``: XLA off for mixed precision on several replicas.

    Keras 3 compiles the train step with XLA by default on GPUs ("auto"), and under
    MirroredStrategy with mixed_float16 its LossScaleOptimizer then calls merge_call inside the
    XLA function and crashes (keras-team/keras#21366). Everything else keeps Keras' default.
    """
    return False if mixed_precision and replicas > 1 else "auto"


def _config_record(config: TrainConfig) -> dict[str, Any]:
    return json.loads(config.model_dump_json())


def train(
    config: TrainConfig,
    *,
    config_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train GlaViTU as ``config`` says and return where the result bundle is.

    ``resume`` continues the run in ``config.output`` from its last completed epoch (weights,
    optimizer state and epoch counter); the architecture and data settings must be unchanged.
    ``progress`` shows a rich progress display on stderr (the CLI turns it on for terminals).
    """
    started = time.perf_counter()
    output = Path(config.output)
    previous = read_state(output)
    if resume and previous is None:
        raise ConfigError(
            f"nothing to resume in {output} (no {STATE_DIR}/{STATE_FILE}); run without --resume"
        )
    if not resume and (previous is not None or (output / BUNDLE_NAME).exists()):
        raise output_exists(
            output,
            "already holds a training run",
            fix="pass --resume to continue it, or set output (or --set output=…) to a new folder",
        )
    if resume and previous is not None:
        before = previous.get("config", {})
        now = _config_record(config)
        for section in ("data", "model"):
            if before.get(section) != now.get(section):
                raise ConfigError(
                    f"cannot resume {output}: the [{section}] settings differ from the run's "
                    f"(was {before.get(section)}, now {now.get(section)})"
                )

    start_point = None
    if config.finetuning and not resume:
        assert config.training.weights is not None  # validated by TrainConfig
        start_point = inspect_starting_point(config.training.weights)
    region_names = None
    if previous is not None and previous.get("region_names"):
        region_names = previous["region_names"]
    elif start_point is not None and config.model.location_encoding == "region":
        region_names = start_point.region_names

    from glaviz.training.data import open_training_data

    data = open_training_data(config, region_names=region_names)
    try:
        return _run(
            config,
            data,
            output=output,
            previous=previous if resume else None,
            start_point=start_point,
            config_path=config_path,
            progress=progress,
            started=started,
        )
    finally:
        data.close()


def _run(
    config: TrainConfig,
    data: TrainingData,
    *,
    output: Path,
    previous: dict[str, Any] | None,
    start_point: StartingPoint | None,
    config_path: str | os.PathLike[str] | None,
    progress: bool,
    started: float,
) -> TrainResult:
    from glaviz.util.tf import import_tensorflow

    tf = import_tensorflow()
    import keras

    from glaviz.model.bundle import BundleMetadata, load_bundle, save_bundle
    from glaviz.model.glavitu import build_glavitu
    from glaviz.published.normalisation import NormalisationStats
    from glaviz.training.data import train_dataset, validation_dataset
    from glaviz.training.recipe import CosineRestarts, FocalLoss, GlacierIoU

    t = config.training
    location_size = data.location.size if data.location is not None else 0
    arch = model_config(config, location_size=location_size)
    region_names = (
        list(data.location.region_names)
        if data.location is not None and (data.location.encoding == "region")
        else None
    )
    epochs = config.epochs
    steps = t.steps_per_epoch or max(1, data.train_patches // t.batch_size * 4)
    val_batches = -(-data.val_samples // t.batch_size)
    val_steps = min(t.validation_steps, val_batches) if t.validation_steps else val_batches
    initial_epoch = int(previous["epoch"]) if previous else 0
    if initial_epoch >= epochs:
        raise ConfigError(
            f"{output} already completed {initial_epoch} epochs of {epochs}; raise "
            "training.epochs (e.g. --set training.epochs=…) to train further"
        )

    output.mkdir(parents=True, exist_ok=True)
    stats = NormalisationStats.published().to_dict()
    normalization = {g: stats[g] for g in arch.feature_groups}
    dataset_record = {
        "train": str(config.data.train),
        "val": str(config.data.val),
        "test": str(config.data.test) if config.data.test else None,
        "regions": list(config.data.regions),
        "subregions": list(config.data.subregions),
        "train_tiles": len(data.train_tiles),
        "val_tiles": len(data.val_tiles),
    }

    def metadata(extra: dict[str, Any]) -> BundleMetadata:
        return BundleMetadata(
            architecture=arch,
            normalization=normalization,
            calibration=None,
            region_names=region_names,
            source=str(config_path) if config_path else "glaviz train",
            training={
                "strategy": t.strategy,
                "weights": t.weights,
                "dataset": dataset_record,
                "epochs_planned": epochs,
                "batch_size": t.batch_size,
                "steps_per_epoch": steps,
                "learning_rate": config.learning_rate,
                "restart_epochs": config.restart_epochs,
                "seed": t.seed,
                "augment": config.augment.model_dump(),
                **extra,
            },
        )

    state: dict[str, Any] = previous or {
        "epoch": 0,
        "best_val_iou": float("-inf"),
        "best_epoch": 0,
        "best_val_loss": float("inf"),
        "best_loss_epoch": 0,
        "history": [],
        "region_names": region_names,
        "config": _config_record(config),
    }
    if previous is None:
        _write_json(output / "config.json", _config_record(config))

    previous_policy = keras.config.dtype_policy()
    if t.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(t.seed)
    try:
        strategy = _strategy(tf)
        replicas = strategy.num_replicas_in_sync
        if replicas > 1:
            # A partial last validation batch can leave a replica an empty share, on which
            # Keras' BatchNormalization fails ("Incompatible shapes: [C] vs. [0,…]"): several
            # replicas validate on whole batches only.
            if data.val_samples < t.batch_size:
                raise ConfigError(
                    f"{replicas} replicas need at least one whole validation batch of "
                    f"{t.batch_size}, but the validation split has {data.val_samples} windows"
                )
            val_steps = min(val_steps, data.val_samples // t.batch_size)
        with strategy.scope():
            train_model, _ = build_glavitu(arch)
            if start_point is not None:
                load_starting_weights(train_model, start_point, arch)
            boundaries = [e * steps for e in config.restart_epochs]
            optimizer = keras.optimizers.Adam(
                learning_rate=CosineRestarts(config.learning_rate, boundaries)
            )
            train_model.compile(
                optimizer=optimizer,
                loss={
                    "deepsupervision": FocalLoss(t.focal_gamma),
                    "output": FocalLoss(t.focal_gamma),
                },
                loss_weights={
                    "deepsupervision": t.deep_supervision_weight,
                    "output": t.output_weight,
                },
                metrics={"output": [GlacierIoU(name="iou")]},
                jit_compile=jit_compile_setting(
                    replicas=strategy.num_replicas_in_sync, mixed_precision=t.mixed_precision
                ),
            )
            if previous is not None:
                folder = output / STATE_DIR
                stem = previous["checkpoint"]
                what = f"cannot resume {output}"
                _read_variables(folder / f"{stem}.weights.h5", list(train_model.weights), what)
                train_model.optimizer.build(train_model.trainable_variables)
                _read_variables(
                    folder / f"{stem}.optimizer.h5", list(train_model.optimizer.variables), what
                )

        # A resumed run draws a fresh patch stream rather than replaying the first epochs'.
        train_ds = train_dataset(data, config, seed=t.seed + 7919 * initial_epoch)
        val_ds = validation_dataset(data, config)
        if replicas > 1:
            val_ds = val_ds.unbatch().batch(t.batch_size, drop_remainder=True)
        # Keras keeps one validation iterator across epochs when validation_steps is set, so a
        # finite dataset would give epoch 2 the leftovers of epoch 1 and then run dry: every
        # epoch validates on the same first val_steps batches.
        val_ds = val_ds.take(val_steps).repeat()
        checkpointer = _make_checkpointer(
            keras=keras, output=output, metadata=metadata, state=state
        )
        callbacks: list[Any] = [
            keras.callbacks.CSVLogger(str(output / "log.csv"), append=previous is not None),
            _make_tensorboard(tf, keras, output / "tensorboard"),
            checkpointer,
        ]
        if progress:
            callbacks.append(
                _make_progress(keras, epochs=epochs, steps=steps, initial_epoch=initial_epoch)
            )
        train_model.fit(
            train_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_data=val_ds,
            validation_steps=val_steps,
            callbacks=callbacks,
            shuffle=False,  # the sampler already draws random windows
            verbose=0,
        )

        # The result: the best-IoU weights again, now with the final training facts.
        bundle_path = output / BUNDLE_NAME
        if checkpointer.best_weights is not None:
            train_model.set_weights(checkpointer.best_weights)
        elif bundle_path.exists():
            train_model.set_weights(load_bundle(bundle_path).train_model.get_weights())
        else:
            raise InputError(
                f"training produced no finite validation IoU in {epochs} epochs; check the "
                "validation split and the learning rate"
            )
        save_bundle(
            bundle_path,
            train_model,
            metadata(
                {
                    "epoch": state["best_epoch"],
                    "epochs_run": state["epoch"],
                    "val_iou": state["best_val_iou"],
                    "val_loss": next(
                        (
                            r.get("val_loss")
                            for r in state["history"]
                            if r["epoch"] == state["best_epoch"]
                        ),
                        None,
                    ),
                    "best_val_loss": state["best_val_loss"],
                    "best_loss_epoch": state["best_loss_epoch"],
                }
            ),
            overwrite=True,
        )
        # Last: a folder with a run record holds a finished run (--skip-existing reads it).
        write_record(output / RECORD_NAME, train_record(config))
    finally:
        keras.config.set_dtype_policy(previous_policy)

    return TrainResult(
        output=output,
        bundle=bundle_path,
        best_loss_bundle=output / BEST_LOSS_NAME,
        epochs_run=int(state["epoch"]),
        best_epoch=int(state["best_epoch"]),
        best_val_iou=float(state["best_val_iou"]),
        best_val_loss=float(state["best_val_loss"]),
        seconds=time.perf_counter() - started,
        history=list(state["history"]),
    )

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

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.config.train import DataSection, TrainConfig
from glaviz.errors import ConfigError, InputError, WeightsError
from glaviz.model.glavitu import GlaViTUConfig
from glaviz.published.location import region_names
from glaviz.runs.atomic import atomic_path, write_json_atomic
from glaviz.runs.outputs import output_exists
from glaviz.runs.records import write_record
from glaviz.training.data import TrainingData
from glaviz.training.record import RECORD_NAME, train_record

if TYPE_CHECKING:
    from glaviz.model.bundle import BundleMetadata

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


def read_state(output: Path) -> dict[str, Any] | None:
    """The resume state of a run folder, or None if it has none."""
    path = output / STATE_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is damaged ({exc}); start a new run elsewhere") from None


@dataclass
class RunState:
    """A run's progress: what ``state/state.json`` holds and what :class:`TrainResult` reports.

    One object, updated by the checkpointer after every epoch and read by the final stages, so
    the bookkeeping has one owner and named fields instead of a dict shared by closures.
    """

    #: The resolved configuration the run started with (``config.json``).
    config: dict[str, Any]
    region_names: list[str] | None = None
    epoch: int = 0  #: completed epochs
    best_val_iou: float = float("-inf")
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    best_loss_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    #: File stem of the last epoch's variables in ``state/`` (``epoch-0003``).
    checkpoint: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """A ``state.json`` as read back; keys this version does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def add_epoch(self, done: int, logs: dict[str, Any]) -> tuple[bool, bool]:
        """Record epoch ``done``'s logs; whether it beat the best validation IoU and loss."""
        iou = float(logs.get("val_output_iou", float("nan")))
        loss = float(logs.get("val_loss", float("nan")))
        self.history.append({"epoch": done, **{k: float(v) for k, v in logs.items()}})
        better_iou = bool(np.isfinite(iou) and iou > self.best_val_iou)
        if better_iou:
            self.best_val_iou, self.best_epoch = iou, done
        better_loss = bool(np.isfinite(loss) and loss < self.best_val_loss)
        if better_loss:
            self.best_val_loss, self.best_loss_epoch = loss, done
        return better_iou, better_loss

    def val_loss_of(self, epoch: int) -> float | None:
        return next((r.get("val_loss") for r in self.history if r["epoch"] == epoch), None)


# --------------------------------------------------------------------------------------------------
# What a run will do, fixed before TensorFlow builds anything


@dataclass(frozen=True)
class RunPlan:
    """Architecture, schedule lengths and the epoch to start from."""

    arch: GlaViTUConfig
    #: Region names of a region-encoding model (encoding order), else None.
    region_names: list[str] | None
    epochs: int
    initial_epoch: int
    steps: int  #: training steps per epoch
    val_steps: int  #: validation batches per epoch

    def for_replicas(self, replicas: int, *, val_samples: int, batch_size: int) -> RunPlan:
        """The plan on ``replicas`` devices: validation on whole global batches only.

        A partial last validation batch can leave a replica an empty share, on which Keras'
        BatchNormalization fails ("Incompatible shapes: [C] vs. [0,…]").
        """
        if replicas <= 1:
            return self
        if val_samples < batch_size:
            raise ConfigError(
                f"{replicas} replicas need at least one whole validation batch of "
                f"{batch_size}, but the validation split has {val_samples} windows"
            )
        return dataclasses.replace(self, val_steps=min(self.val_steps, val_samples // batch_size))


def plan_run(
    config: TrainConfig, data: TrainingData, *, output: Path, previous: RunState | None
) -> RunPlan:
    """The plan of a run on ``data``; a resumed run that already reached its epochs is an error."""
    t = config.training
    location = data.location
    epochs = config.epochs
    initial_epoch = previous.epoch if previous is not None else 0
    if initial_epoch >= epochs:
        raise ConfigError(
            f"{output} already completed {initial_epoch} epochs of {epochs}; raise "
            "training.epochs (e.g. --set training.epochs=…) to train further"
        )
    val_batches = -(-data.val_samples // t.batch_size)
    return RunPlan(
        arch=model_config(config, location_size=location.size if location is not None else 0),
        region_names=(
            list(location.region_names)
            if location is not None and location.encoding == "region"
            else None
        ),
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps=t.steps_per_epoch or max(1, data.train_patches // t.batch_size * 4),
        val_steps=min(t.validation_steps, val_batches) if t.validation_steps else val_batches,
    )


@dataclass(frozen=True)
class BundleFacts:
    """What every bundle of the run records besides its weights (its metadata)."""

    config: TrainConfig
    plan: RunPlan
    #: The published normalisation statistics of the model's feature groups.
    normalization: dict[str, Any]
    dataset: dict[str, Any]
    source: str

    @classmethod
    def create(
        cls,
        config: TrainConfig,
        data: TrainingData,
        plan: RunPlan,
        config_path: str | os.PathLike[str] | None,
    ) -> BundleFacts:
        from glaviz.published.normalisation import NormalisationStats

        stats = NormalisationStats.published().to_dict()
        d = config.data
        dataset = {
            "train": str(d.train),
            "val": str(d.val),
            "test": str(d.test) if d.test else None,
            "regions": list(d.regions),
            "subregions": list(d.subregions),
            "train_tiles": len(data.train_tiles),
            "val_tiles": len(data.val_tiles),
        }
        source = str(config_path) if config_path else "glaviz train"
        normalization = {g: stats[g] for g in plan.arch.feature_groups}
        return cls(config, plan, normalization, dataset, source)

    def metadata(self, **extra: Any) -> BundleMetadata:
        """Bundle metadata with ``extra`` training facts (epoch, scores) added."""
        from glaviz.model.bundle import BundleMetadata

        config, t = self.config, self.config.training
        return BundleMetadata(
            architecture=self.plan.arch,
            normalization=self.normalization,
            calibration=None,
            region_names=self.plan.region_names,
            source=self.source,
            training={
                "strategy": t.strategy,
                "weights": t.weights,
                "dataset": self.dataset,
                "epochs_planned": self.plan.epochs,
                "batch_size": t.batch_size,
                "steps_per_epoch": self.plan.steps,
                "learning_rate": config.learning_rate,
                "restart_epochs": config.restart_epochs,
                "seed": t.seed,
                "augment": config.augment.model_dump(),
                **extra,
            },
        )


# --------------------------------------------------------------------------------------------------
# Callbacks


def _make_checkpointer(keras: Any, *, output: Path, facts: BundleFacts, state: RunState) -> Any:
    """Keras callback saving the best bundles and the resume state after every epoch.

    It updates ``state`` (its only mutable input, given explicitly) and keeps the best-IoU weights
    for the final bundle. The class is defined here because its base class comes from Keras,
    which is imported only when training starts.
    """
    from glaviz.model.bundle import save_bundle

    class Checkpointer(keras.callbacks.Callback):
        def __init__(self, output: Path, facts: BundleFacts, state: RunState) -> None:
            super().__init__()
            self.output, self.facts, self.state = output, facts, state
            #: Weights of the best validation IoU so far, for the final bundle.
            self.best_weights: list[np.ndarray] | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            done = epoch + 1
            better_iou, better_loss = self.state.add_epoch(done, logs)
            scores = {
                "epoch": done,
                "val_iou": float(logs.get("val_output_iou", float("nan"))),
                "val_loss": float(logs.get("val_loss", float("nan"))),
            }
            if better_iou:
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
                self._save_bundle(BUNDLE_NAME, scores)
            if better_loss:
                self._save_bundle(BEST_LOSS_NAME, scores)
            self._save_state(done)

        def _save_bundle(self, name: str, scores: dict[str, Any]) -> None:
            metadata = self.facts.metadata(**scores)
            save_bundle(self.output / name, self.model, metadata, overwrite=True)

        def _save_state(self, done: int) -> None:
            folder = self.output / STATE_DIR
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"epoch-{done:04d}"
            _write_variables(folder / f"{stem}.weights.h5", list(self.model.weights))
            _write_variables(folder / f"{stem}.optimizer.h5", list(self.model.optimizer.variables))
            previous = self.state.checkpoint
            self.state.epoch, self.state.checkpoint = done, stem
            # Written after the variables it names, so it always points at complete files.
            write_json_atomic(folder / STATE_FILE, self.state.to_dict())
            if previous and previous != stem:
                for suffix in (".weights.h5", ".optimizer.h5"):
                    (folder / f"{previous}{suffix}").unlink(missing_ok=True)

    return Checkpointer(output, facts, state)


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
    Everything that can be refused (the output folder, the starting weights, the data) is checked
    before TensorFlow is imported.
    """
    from glaviz.training.data import open_training_data

    started = time.perf_counter()
    output = Path(config.output)
    previous = _resume_point(config, output, resume=resume)
    start_point = _starting_point(config, resumed=previous is not None)
    names = _fixed_region_names(config, previous, start_point)
    data = open_training_data(config, region_names=names)
    try:
        plan = plan_run(config, data, output=output, previous=previous)
        facts = BundleFacts.create(config, data, plan, config_path)
        state = _open_run(config, plan, output, previous)
        bundle = _fit_and_save(
            config, data, plan, facts, state, start_point=start_point, progress=progress
        )
    finally:
        data.close()
    return TrainResult(
        output=output,
        bundle=bundle,
        best_loss_bundle=output / BEST_LOSS_NAME,
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        best_val_iou=float(state.best_val_iou),
        best_val_loss=float(state.best_val_loss),
        seconds=time.perf_counter() - started,
        history=list(state.history),
    )


# Stages before TensorFlow ------------------------------------------------------------------------


def _resume_point(config: TrainConfig, output: Path, *, resume: bool) -> RunState | None:
    """The state to resume from (None for a new run), after checking the output folder."""
    previous = read_state(output)
    if resume and previous is None:
        raise ConfigError(
            f"nothing to resume in {output} (no {STATE_DIR}/{STATE_FILE}); run without --resume"
        )
    if not resume:
        if previous is not None or (output / BUNDLE_NAME).exists():
            raise output_exists(
                output,
                "already holds a training run",
                fix="pass --resume to continue it, or set output (or --set output=…) to a new "
                "folder",
            )
        return None
    assert previous is not None
    before = previous.get("config", {})
    now = _config_record(config)
    for section in ("data", "model"):
        was, wanted = (_comparable(section, c.get(section)) for c in (before, now))
        if was != wanted:
            raise ConfigError(
                f"cannot resume {output}: the [{section}] settings differ from the run's "
                f"(was {was}, now {wanted})"
            )
    return RunState.from_dict(previous)


def _comparable(section: str, recorded: Any) -> Any:
    """A config section as compared on resume: data paths absolute against the working directory.

    Runs started before this release recorded data paths relative to the working directory they
    were started from (a config validated in Python may still hold such paths); made absolute,
    they compare equal to the absolute paths a config file gives today.
    """
    if section != "data" or not isinstance(recorded, dict):
        return recorded
    from glaviz.config.loading import absolute_paths

    return json.loads(json.dumps(absolute_paths(DataSection, recorded, Path.cwd()), default=str))


def _starting_point(config: TrainConfig, *, resumed: bool) -> StartingPoint | None:
    """The fine-tuning weights, inspected; None for a new model or a resumed run."""
    if not config.finetuning or resumed:
        return None
    assert config.training.weights is not None  # validated by TrainConfig
    return inspect_starting_point(config.training.weights)


def _fixed_region_names(
    config: TrainConfig, previous: RunState | None, start_point: StartingPoint | None
) -> list[str] | None:
    """Region-encoding order set by the run being resumed or the weights being fine-tuned."""
    if previous is not None and previous.region_names:
        return previous.region_names
    if start_point is not None and config.model.location_encoding == "region":
        return start_point.region_names
    return None


def _open_run(
    config: TrainConfig, plan: RunPlan, output: Path, previous: RunState | None
) -> RunState:
    """Create the output folder; a new run records its configuration in ``config.json``."""
    output.mkdir(parents=True, exist_ok=True)
    if previous is not None:
        return previous
    record = _config_record(config)
    write_json_atomic(output / "config.json", record)
    return RunState(config=record, region_names=plan.region_names)


# Stages in TensorFlow ----------------------------------------------------------------------------


def _fit_and_save(
    config: TrainConfig,
    data: TrainingData,
    plan: RunPlan,
    facts: BundleFacts,
    state: RunState,
    *,
    start_point: StartingPoint | None,
    progress: bool,
) -> Path:
    """Build, fit, then write the result bundle and the run record; returns the bundle."""
    from glaviz.util.tf import import_tensorflow

    tf = import_tensorflow()
    import keras

    t = config.training
    output = Path(config.output)
    with _dtype_policy(keras, mixed_precision=t.mixed_precision):
        keras.utils.set_random_seed(t.seed)
        strategy = _strategy(tf)
        replicas = strategy.num_replicas_in_sync
        plan = plan.for_replicas(replicas, val_samples=data.val_samples, batch_size=t.batch_size)
        model = _build_model(
            keras, strategy, config, plan, start_point=start_point, resume=state.checkpoint
        )
        train_ds, val_ds = _datasets(data, config, plan, replicas=replicas)
        checkpointer, callbacks = _callbacks(
            tf, keras, output=output, plan=plan, facts=facts, state=state, progress=progress
        )
        _fit(model, train_ds, val_ds, plan, callbacks)
        bundle = _save_result(model, checkpointer.best_weights, facts, state, output=output)
        # Last: a folder with a run record holds a finished run (--skip-existing reads it).
        write_record(output / RECORD_NAME, train_record(config))
    return bundle


@contextmanager
def _dtype_policy(keras: Any, *, mixed_precision: bool) -> Iterator[None]:
    """Keras' global dtype policy for the run (``mixed_float16`` on request), restored after."""
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _build_model(
    keras: Any,
    strategy: Any,
    config: TrainConfig,
    plan: RunPlan,
    *,
    start_point: StartingPoint | None,
    resume: str | None,
) -> Any:
    """The compiled training model: new, from fine-tuning weights, or restored from ``state/``.

    ``resume`` is the stem of the last completed epoch's files (``epoch-0003``): model and
    optimizer variables are restored, so the learning-rate schedule continues where it stopped.
    """
    from glaviz.model.glavitu import build_glavitu
    from glaviz.training.recipe import CosineRestarts, FocalLoss, GlacierIoU

    t = config.training
    with strategy.scope():
        model, _ = build_glavitu(plan.arch)
        if start_point is not None:
            load_starting_weights(model, start_point, plan.arch)
        boundaries = [e * plan.steps for e in config.restart_epochs]
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=CosineRestarts(config.learning_rate, boundaries)
            ),
            loss={"deepsupervision": FocalLoss(t.focal_gamma), "output": FocalLoss(t.focal_gamma)},
            loss_weights={"deepsupervision": t.deep_supervision_weight, "output": t.output_weight},
            metrics={"output": [GlacierIoU(name="iou")]},
            jit_compile=jit_compile_setting(
                replicas=strategy.num_replicas_in_sync, mixed_precision=t.mixed_precision
            ),
        )
        if resume is not None:
            output = Path(config.output)
            folder, what = output / STATE_DIR, f"cannot resume {output}"
            _read_variables(folder / f"{resume}.weights.h5", list(model.weights), what)
            model.optimizer.build(model.trainable_variables)
            _read_variables(
                folder / f"{resume}.optimizer.h5", list(model.optimizer.variables), what
            )
    return model


def _datasets(
    data: TrainingData, config: TrainConfig, plan: RunPlan, *, replicas: int
) -> tuple[Any, Any]:
    """The training and validation ``tf.data`` pipelines of the run."""
    from glaviz.training.data import train_dataset, validation_dataset

    t = config.training
    # A resumed run draws a fresh patch stream rather than replaying the first epochs'.
    train_ds = train_dataset(data, config, seed=t.seed + 7919 * plan.initial_epoch)
    val_ds = validation_dataset(data, config)
    if replicas > 1:
        val_ds = val_ds.unbatch().batch(t.batch_size, drop_remainder=True)
    # Keras keeps one validation iterator across epochs when validation_steps is set, so a
    # finite dataset would give epoch 2 the leftovers of epoch 1 and then run dry: every
    # epoch validates on the same first val_steps batches.
    return train_ds, val_ds.take(plan.val_steps).repeat()


def _callbacks(
    tf: Any,
    keras: Any,
    *,
    output: Path,
    plan: RunPlan,
    facts: BundleFacts,
    state: RunState,
    progress: bool,
) -> tuple[Any, list[Any]]:
    """The checkpointer (bundles, resume state) and every callback of the fit, it included."""
    checkpointer = _make_checkpointer(keras, output=output, facts=facts, state=state)
    resumed = plan.initial_epoch > 0
    callbacks: list[Any] = [
        keras.callbacks.CSVLogger(str(output / "log.csv"), append=resumed),
        _make_tensorboard(tf, keras, output / "tensorboard"),
        checkpointer,
    ]
    if progress:
        callbacks.append(
            _make_progress(
                keras, epochs=plan.epochs, steps=plan.steps, initial_epoch=plan.initial_epoch
            )
        )
    return checkpointer, callbacks


def _fit(model: Any, train_ds: Any, val_ds: Any, plan: RunPlan, callbacks: list[Any]) -> None:
    """The epochs of the plan still to run; the callbacks save after each one."""
    model.fit(
        train_ds,
        epochs=plan.epochs,
        initial_epoch=plan.initial_epoch,
        steps_per_epoch=plan.steps,
        validation_data=val_ds,
        validation_steps=plan.val_steps,
        callbacks=callbacks,
        shuffle=False,  # the sampler already draws random windows
        verbose=0,
    )


def _save_result(
    model: Any,
    best_weights: list[np.ndarray] | None,
    facts: BundleFacts,
    state: RunState,
    *,
    output: Path,
) -> Path:
    """``model.glaviz`` again: the best-IoU weights, now with the final training facts."""
    from glaviz.model.bundle import load_bundle, save_bundle

    bundle = output / BUNDLE_NAME
    if best_weights is not None:
        model.set_weights(best_weights)
    elif bundle.exists():  # resumed, and no epoch of this invocation beat the earlier best
        model.set_weights(load_bundle(bundle).train_model.get_weights())
    else:
        raise InputError(
            f"training produced no finite validation IoU in {facts.plan.epochs} epochs; check the "
            "validation split and the learning rate"
        )
    metadata = facts.metadata(
        epoch=state.best_epoch,
        epochs_run=state.epoch,
        val_iou=state.best_val_iou,
        val_loss=state.val_loss_of(state.best_epoch),
        best_val_loss=state.best_val_loss,
        best_loss_epoch=state.best_loss_epoch,
    )
    save_bundle(bundle, model, metadata, overwrite=True)
    return bundle

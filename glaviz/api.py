"""The engine behind each command, called with the command's configuration model.

These are what ``glaviz.deploy(...)``, ``glaviz.predict(...)`` … are in a notebook, and what the
CLI commands call: one configuration model per command, so a config file, a run record and a
notebook cell describe a run the same way. Each function first applies the configuration's
``skip_existing``/``overwrite`` (returning :class:`~glaviz.runs.records.Skipped` when a matching run
is already there), and commands whose output is a single file get a run record beside it
(``OUT.run.json``) for the next ``--skip-existing``. Heavy imports happen inside each function.
Every result has ``summary()`` (the line the command prints) and ``to_json()`` (its ``--json``
object): see :class:`CommandResult`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from glaviz.acquire.run import AcquireResult, SearchResult
    from glaviz.calibration.fit import CalibrationFit
    from glaviz.change import ChangeResult
    from glaviz.config import (
        AcquireConfig,
        CalibrateConfig,
        ChangeConfig,
        CommandConfig,
        DeployConfig,
        EvaluateConfig,
        FeaturesConfig,
        InventoryConfig,
        OptimiseBiasConfig,
        PredictConfig,
    )
    from glaviz.engine.deploy import DeployResult
    from glaviz.engine.predict import PredictResult
    from glaviz.engine.region_vector import BiasResult
    from glaviz.evaluation import Evaluation
    from glaviz.features.stack import StackResult
    from glaviz.inventory.build import InventoryResult
    from glaviz.runs.records import Skipped

R = TypeVar("R")


class CommandResult(Protocol):
    """What every engine here returns when it ran: the command's human line and its ``--json``.

    The CLI prints ``summary()`` and returns ``to_json()`` (plus ``status``), so a notebook and a
    terminal report a run in the same words.
    """

    def summary(self) -> str:
        """One line for people: counts, timings and where the outputs are."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The command's ``--json`` object without its ``status`` key."""
        ...


C = TypeVar("C", bound="CommandConfig")


def _prepare(config: C, check: bool) -> tuple[C, Skipped | None]:
    """``config`` as it is to run after ``--overwrite``/``--skip-existing``, or the skip.

    ``check=False``: the caller (the CLI) has decided already. Run records load only here, so
    that importing this module (every command does) stays cheap.
    """
    if not check:
        return config, None
    from glaviz.runs.records import Skipped, prepare_outputs

    prepared = prepare_outputs(config)
    return (config, prepared) if isinstance(prepared, Skipped) else (prepared, None)


def _recorded(config: CommandConfig, command: str, run: Callable[[], R]) -> R:
    """Run ``run`` and write the record of a single-output command beside its output.

    The fingerprint is taken before the run: an input that changes while it runs makes the record
    not match, which is the safe way round.
    """
    from glaviz.runs.records import run_record, weights_file, write_record

    try:
        record = run_record(config, command=command, weights=weights_file(config))
    except FileNotFoundError:
        record = None  # a missing input: the engine says so in its own words
    result = run()
    path = config.record_path()
    if path is not None and record is not None:
        # The sizes of the outputs, so that a later --skip-existing notices a cut or lost one.
        outputs = {os.path.relpath(p, path.parent): p for p in config.output_files() if p.is_file()}
        write_record(path, record, outputs=outputs)
    return result


def deploy(
    config: DeployConfig, *, progress: bool = False, check: bool = True
) -> DeployResult | Skipped:
    """Map glaciers on a whole scene (``glaviz deploy``); the engine writes its own run.json."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.engine.deploy import deploy as run

    return run(config, progress=progress)


def predict(
    config: PredictConfig, *, progress: bool = False, check: bool = True
) -> PredictResult | Skipped:
    """Predict every tile of a benchmark split (``glaviz predict``)."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.engine.predict import predict as run

    return _recorded(config, "predict", lambda: run(config, progress=progress))


def evaluate(
    config: EvaluateConfig, *, progress: bool = False, check: bool = True
) -> Evaluation | Skipped:
    """Score a predictions file or a deployed map (``glaviz evaluate``); writes ``json_output``."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from dataclasses import replace

    from glaviz.evaluation import evaluate_predictions, evaluate_rasters
    from glaviz.runs.atomic import write_json_atomic

    def run() -> Evaluation:
        if config.predictions is not None:
            result = evaluate_predictions(predictions=config.predictions, progress=progress)
        else:
            assert config.prediction is not None and config.truth is not None
            result = evaluate_rasters(
                prediction=config.prediction, truth=config.truth, progress=progress
            )
        if config.json_output is not None and not config.to_stdout:
            # allow_nan=False: undefined scores are None (null) by construction; a NaN that slipped
            # through would make a file that strict JSON readers reject.
            write_json_atomic(config.json_output, result.to_dict(), allow_nan=False)
            result = replace(result, output=config.json_output)
        return result

    return _recorded(config, "evaluate", run)


def calibrate(
    config: CalibrateConfig, *, progress: bool = False, check: bool = True
) -> CalibrationFit | Skipped:
    """Fit a confidence calibration on validation predictions (``glaviz calibrate``)."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.calibration.fit import calibrate as run

    return _recorded(config, "calibrate", lambda: run(config, progress=progress))


def optimise_bias(
    config: OptimiseBiasConfig, *, progress: bool = False, check: bool = True
) -> BiasResult | Skipped:
    """Learn the region vector of a region-encoding model for a scene (``glaviz optimise-bias``)."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.engine.region_vector import optimise_bias as run

    return _recorded(config, "optimise-bias", lambda: run(config, progress=progress))


def compile_features(
    config: FeaturesConfig, *, progress: bool = False, check: bool = True
) -> StackResult | Skipped:
    """Compile input rasters, or convert a published feature file, into one feature stack
    (``glaviz features``)."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.features import run_features

    return _recorded(config, "features", lambda: run_features(config, progress=progress))


def inventory(
    config: InventoryConfig, *, progress: bool = False, check: bool = True
) -> InventoryResult | Skipped:
    """Split glacier complexes into glaciers with RGI-style attributes (``glaviz inventory``);
    the engine writes its own run record beside the GeoPackage."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.inventory import build_inventory

    return build_inventory(config, progress=progress)


def acquire(
    config: AcquireConfig, *, progress: bool = False, check: bool = True
) -> AcquireResult | SearchResult | Skipped:
    """Sentinel-2 reflectance and Copernicus elevation for a region and a season, as a
    deploy-ready folder (``glaviz acquire``); the engine writes ``acquire.json`` among the
    outputs. With ``search_only`` the ranked dates are the result and nothing is written."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.acquire.run import acquire as run

    return run(config, progress=progress)


def change(
    config: ChangeConfig, *, progress: bool = False, check: bool = True
) -> ChangeResult | Skipped:
    """Glacier change between dates, glacier by glacier (``glaviz change``); the engine writes
    its own run.json. ``result.table`` is the glacier table as a GeoDataFrame."""
    config, skipped = _prepare(config, check)
    if skipped is not None:
        return skipped
    from glaviz.change import compute_change

    return compute_change(config, progress=progress)

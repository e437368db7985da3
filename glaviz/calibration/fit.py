"""Fitting a confidence calibration from a predictions file: ``glaviz calibrate``.

The published procedure (``confidence_calibration.ipynb`` of the paper's code), kept exactly so
that a glaviz calibration of the published model reproduces the published calibration files:

1. confidence = 1 − base-2 entropy of the probabilities clipped to [1e-6, 1 − 1e-6]; a pixel is
   correct when (probability of glacier > 0.5) equals the truth;
2. a reliability diagram over ``N`` equal bins on [0, 1] (default 100);
3. fit points: x = mean confidence of each non-empty bin, y = its accuracy, weight
   w = (count / largest count)^0.1, plus the anchors (0, 0) first and (1, 1) last with weight 1;
4. ``sklearn.kernel_ridge.KernelRidge(alpha=(1 − w) · 1e-2, kernel="laplacian")`` fitted on them
   (gamma left at scikit-learn's default, 1 / n_features = 1).

One scikit-learn detail decides what step 4 really does: ``KernelRidge`` reads an ``alpha``
array as one penalty per *target*, not per sample, and with a single target it uses only
``alpha[0]`` — the (0, 0) anchor's, which is 0. The published fit is therefore an unregularised
kernel interpolation of the points (the three published files reproduce their anchors and bin
accuracies to 1e-13). glaviz makes the same call, so its files equal a scikit-learn fit of the
same points; the weights are written down here because they are part of the published recipe.

``method="isotonic"`` fits ``sklearn.isotonic.IsotonicRegression`` (monotone, clipped to [0, 1])
on the same bin points weighted by pixel count, and writes it as a monotone table.

The predictions file is streamed twice, tile by tile: once for the reliability diagram, once to
apply the fitted curve to every pixel's confidence, so the reported ECE after calibration is the
true one of the calibrated confidences (not a curve evaluated at bin means). Models are written
as JSON (never pickles) through :mod:`glaviz.calibration.model`, readable by
``glaviz deploy --calibration``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.calibration.model import CalibrationModel, IsotonicCalibration, KernelRidgeCalibration
from glaviz.calibration.reliability import ECE_BINS, Reliability, correct_and_confidence
from glaviz.errors import ConfigError, InputError
from glaviz.runs.atomic import atomic_path, write_json_atomic
from glaviz.runs.outputs import refuse_existing

if TYPE_CHECKING:
    from glaviz.config.calibrate import CalibrateConfig

__all__ = [
    "METHODS",
    "CalibrationFit",
    "calibrate",
    "collect_reliability",
    "fit_calibration",
    "fit_isotonic",
    "fit_kernel_ridge",
    "plot_reliability",
    "predictions_ece",
]

log = logging.getLogger(__name__)

#: ``--method`` values; the first is the published procedure.
METHODS = ("kernel-ridge", "isotonic")
#: Exponent of the published fit weights ``(count / max count) ** WEIGHT_POWER``.
WEIGHT_POWER = 0.1
#: Scale of the published per-point penalties ``(1 − w) · ALPHA_SCALE``.
ALPHA_SCALE = 1e-2
#: Confidences of the ``check`` table written into each file (verified when loaded).
CHECK_POINTS = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True)
class CalibrationFit:
    """What ``glaviz calibrate`` fitted and measured."""

    model: CalibrationModel
    method: str
    before: Reliability  # the diagram of raw confidences, ``bins`` bins
    after: Reliability  # the diagram of calibrated confidences, ``bins`` bins
    ece_before: float  # 100 bins
    ece_after: float  # 100 bins, from the calibrated confidence of every pixel
    pixels: int
    tiles: int
    output: Path | None = None
    plot: Path | None = None

    def outputs(self) -> list[Path]:
        """The files written: the calibration JSON and, when asked for, the diagram."""
        return [p for p in (self.output, self.plot) if p is not None]

    def summary(self) -> str:
        """The line ``glaviz calibrate`` prints."""
        return (
            f"ECE ({ECE_BINS} bins): {100 * self.ece_before:.2f} % before, "
            f"{100 * self.ece_after:.2f} % after {self.method} calibration "
            f"({self.pixels:,} pixels, {self.tiles} tiles); wrote {self.output}"
            + (f" and {self.plot}" if self.plot else "")
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz calibrate``, less the ``status`` the CLI adds."""
        return {
            "outputs": [str(p) for p in self.outputs()],
            "counts": {
                "ece_before": self.ece_before,
                "ece_after": self.ece_after,
                "pixels": self.pixels,
                "tiles": self.tiles,
            },
            "method": self.method,
        }


# ----------------------------------------------------------------------------- streaming


def collect_reliability(
    predictions: str | Path,
    *,
    bins: Iterable[int] = (ECE_BINS,),
    calibration: CalibrationModel | None = None,
    progress: bool = False,
) -> dict[int, Reliability]:
    """Reliability diagrams of a predictions file for each bin count in ``bins``, in one pass.

    With ``calibration``, the diagrams are of the calibrated confidences (``apply``, clipped to
    [0, 1] as deploy writes them). Reads one block of one tile at a time.
    """
    from glaviz.evaluation.predictions import iter_blocks, open_predictions, tiles
    from glaviz.util.progress import Progress

    diagrams = {int(n): Reliability(int(n)) for n in bins}
    with open_predictions(predictions) as file:
        tile_list = tiles(
            file, path=predictions, need=("prob", "true"), command="glaviz calibrate", labels=False
        )
        with Progress(progress, total=len(tile_list), description="reliability") as bar:
            current = None
            for block in iter_blocks(tile_list, prob=True, true=True):
                assert block.prob is not None and block.true is not None
                conf, correct = correct_and_confidence(block.prob, block.true)
                if calibration is not None:
                    conf = calibration.apply(conf)
                for diagram in diagrams.values():
                    diagram.update(conf, correct)
                if block.tile is not current:
                    current = block.tile
                    bar.advance()
    return diagrams


def predictions_ece(
    predictions: str | Path,
    *,
    calibration: CalibrationModel | None = None,
    bins: int = ECE_BINS,
) -> float:
    """ECE of a predictions file's confidences (calibrated by ``calibration``, if given)."""
    return collect_reliability(predictions, bins=(bins,), calibration=calibration)[bins].ece()


# ----------------------------------------------------------------------------- fitting


def _require_pixels(reliability: Reliability) -> None:
    if reliability.total == 0:
        raise _no_pixels()


def _no_pixels() -> InputError:
    return InputError(
        "the reliability diagram is empty: no pixel has a 0/1 truth and finite "
        "probabilities, so there is nothing to calibrate on; check that the predictions "
        "file holds a validation split with outlines"
    )


def fit_points(reliability: Reliability) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The published fit points: (x, y, w) with the (0, 0) anchor first and (1, 1) last."""
    _require_pixels(reliability)
    keep = reliability.nonempty
    count = reliability.count[keep].astype(np.float64)
    x = np.concatenate([[0.0], reliability.mean_confidence[keep], [1.0]])
    y = np.concatenate([[0.0], reliability.accuracy[keep], [1.0]])
    w = np.concatenate([[1.0], (count / count.max()) ** WEIGHT_POWER, [1.0]])
    return x, y, w


def fit_kernel_ridge(reliability: Reliability) -> KernelRidgeCalibration:
    """The published kernel-ridge calibration of a reliability diagram (see module docstring)."""
    from sklearn.kernel_ridge import KernelRidge

    x, y, w = fit_points(reliability)
    features = x[:, np.newaxis]
    regression = KernelRidge(alpha=(1.0 - w) * ALPHA_SCALE, kernel="laplacian")
    try:
        regression.fit(features, y)
    except np.linalg.LinAlgError as error:
        raise InputError(
            f"the kernel-ridge fit of {x.size} reliability points is singular ({error}); this "
            "happens when a bin's mean confidence coincides with an anchor (0 or 1). Try "
            "another --bins or --method isotonic"
        ) from error
    dual_coef = np.asarray(regression.dual_coef_, dtype=np.float64).ravel()
    if not np.all(np.isfinite(dual_coef)):
        raise InputError(
            "the kernel-ridge fit produced non-finite coefficients (nearly coincident "
            "reliability points); try another --bins or --method isotonic"
        )
    # scikit-learn's laplacian kernel uses gamma = 1 / n_features when gamma is None.
    gamma = regression.gamma if regression.gamma is not None else 1.0 / features.shape[1]
    return KernelRidgeCalibration(
        gamma=float(gamma), x_fit=x.copy(), dual_coef=dual_coef, kernel="laplacian"
    )


def fit_isotonic(reliability: Reliability) -> IsotonicCalibration:
    """Isotonic regression of bin accuracy on bin confidence, weighted by pixel count."""
    from sklearn.isotonic import IsotonicRegression

    _require_pixels(reliability)
    keep = reliability.nonempty
    regression = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
    regression.fit(
        reliability.mean_confidence[keep],
        reliability.accuracy[keep],
        sample_weight=reliability.count[keep].astype(np.float64),
    )
    return IsotonicCalibration(
        x=np.asarray(regression.X_thresholds_, dtype=np.float64),
        y=np.asarray(regression.y_thresholds_, dtype=np.float64),
    )


def _method(method: str) -> str:
    normalised = str(method).strip().lower().replace("_", "-")
    if normalised not in METHODS:
        raise ConfigError(
            f"unknown calibration method {method!r}; use one of {', '.join(METHODS)} "
            f"(default {METHODS[0]}, the published procedure)"
        )
    return normalised


def fit_calibration(reliability: Reliability, *, method: str = METHODS[0]) -> CalibrationModel:
    """Fit ``method`` (``kernel-ridge`` or ``isotonic``) to a reliability diagram."""
    if _method(method) == "isotonic":
        return fit_isotonic(reliability)
    return fit_kernel_ridge(reliability)


# ----------------------------------------------------------------------------- the command


def calibrate(config: CalibrateConfig, *, progress: bool = False) -> CalibrationFit:
    """Fit a calibration on a predictions file, write it as JSON (and a reliability plot).

    Checks every output before reading anything (the options were checked when ``config`` was
    built); then streams the file twice.
    """
    predictions, output, plot = Path(config.predictions), Path(config.output), config.plot
    for path in (output, plot):
        if path is not None and path.is_dir():
            raise ConfigError(f"{path} is a folder; give a file name")
        if path is not None:
            refuse_existing(path, overwrite=config.overwrite)
    if plot is not None:
        _require_matplotlib()

    bins = config.bins
    tiles = _check_bins(predictions, bins)
    sizes = sorted({bins, ECE_BINS})
    raw = collect_reliability(predictions, bins=sizes, progress=progress)
    before = raw[bins]
    _require_pixels(before)
    model = fit_calibration(before, method=config.method)
    calibrated = collect_reliability(predictions, bins=sizes, calibration=model, progress=progress)
    fit = CalibrationFit(
        model=model,
        method=config.method,
        before=before,
        after=calibrated[bins],
        ece_before=raw[ECE_BINS].ece(),
        ece_after=calibrated[ECE_BINS].ece(),
        pixels=before.total,
        tiles=tiles,
        output=output,
        plot=plot,
    )
    data = _calibration_file(fit, predictions=predictions)
    # Verify what is about to be written reads back into the same model (check table included).
    CalibrationModel.from_dict(data, source=f"calibration for {output}")
    if plot is not None:  # first: a plotting failure must not leave a new CAL.json behind
        plot_reliability(
            before=fit.before,
            after=fit.after,
            path=plot,
            ece_before=fit.ece_before,
            ece_after=fit.ece_after,
        )
    write_json_atomic(output, data, allow_nan=False)
    return fit


def _calibration_file(fit: CalibrationFit, *, predictions: Path) -> dict[str, Any]:
    """The CAL.json of a fit: the model, its check table, provenance and the two ECEs."""
    data = fit.model.to_dict()
    data["check"] = {
        "c": CHECK_POINTS.tolist(),
        "calibrated_unclipped": fit.model.predict(CHECK_POINTS).tolist(),
    }
    data["source"] = (
        f"glaviz calibrate --method {fit.method} --bins {fit.before.bins} on {predictions.name} "
        f"({fit.pixels} pixels, {fit.tiles} tiles)"
    )
    data["ece_before"], data["ece_after"] = fit.ece_before, fit.ece_after
    return data


def _check_bins(predictions: Path, bins: int) -> int:
    """Refuse more bins than the predictions file has pixels, before reading its values;
    returns its number of tiles (for the provenance line).

    The tiles' shapes give the pixel count without reading a value. Only when ``bins`` exceeds
    it are the truths read, so that a file with no labelled pixel at all gets the message that
    matters (nothing to calibrate on) rather than one about ``--bins``.
    """
    from glaviz.evaluation.predictions import open_predictions, tiles

    with open_predictions(predictions) as file:
        found = tiles(
            file, path=predictions, need=("prob", "true"), command="glaviz calibrate", labels=False
        )
        pixels = sum(info.shape[0] * info.shape[1] for info in found)
        if bins <= pixels:
            return len(found)
        labelled = sum(
            int(np.count_nonzero(np.isin(info.group["true"][()], (0, 1)))) for info in found
        )
    if labelled == 0:
        raise _no_pixels()
    raise ConfigError(
        f"--bins {bins} is more than the {pixels:,} pixels of {predictions}: most bins would be "
        f"empty; use at most {pixels:,} (the published setting is {ECE_BINS})"
    )


# ----------------------------------------------------------------------------- the plot


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            "--plot needs matplotlib, which is not installed; pip install matplotlib, or leave "
            "out --plot"
        ) from error


def plot_reliability(
    *,
    before: Reliability,
    after: Reliability,
    path: str | Path,
    ece_before: float | None = None,
    ece_after: float | None = None,
) -> Path:
    """Accuracy per bin against the diagonal, before and after calibration, as a PNG.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state).
    Written under a temporary name and renamed.
    """
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(11, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    panels: list[tuple[Any, Reliability, str, float | None]] = [
        (axes[0], before, "before calibration", ece_before),
        (axes[1], after, "after calibration", ece_after),
    ]
    for ax, diagram, title, ece in panels:
        edges = diagram.edges
        keep = diagram.nonempty
        ax.bar(
            edges[:-1][keep],
            diagram.accuracy[keep],
            width=np.diff(edges)[keep],
            align="edge",
            color="#4c78a8",
            edgecolor="#2f4b6e",
            linewidth=0.3,
            label="accuracy",
        )
        ax.plot(
            diagram.mean_confidence[keep],
            diagram.accuracy[keep],
            ".",
            color="#e45756",
            markersize=3,
            label="(mean confidence, accuracy)",
        )
        ax.plot([0, 1], [0, 1], "--", color="0.3", linewidth=1, label="perfect calibration")
        # Pixels per bin, so sparse (noisy) bins can be told from well-sampled ones.
        counts = ax.twinx()
        counts.stairs(np.maximum(diagram.count, 0.5), edges, color="0.55", linewidth=0.8)
        counts.set_yscale("log")
        counts.set_ylim(0.5, max(10.0, float(diagram.count.max()) * 20))
        counts.set_ylabel("pixels per bin", color="0.45")
        counts.tick_params(axis="y", colors="0.45", labelsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        suffix = f" — ECE {100 * ece:.2f} %" if ece is not None and np.isfinite(ece) else ""
        ax.set_title(title + suffix)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize="small")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=150)
    return path

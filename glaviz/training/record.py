"""The run record of a finished training run, and ``glaviz train --skip-existing``.

A training run's result depends on its whole configuration, the benchmark files it read and the
weights it started from. ``OUTPUT/run.json`` records their fingerprint (``glaviz.runs.records``)
when the model bundle is written, so a batch script can re-run ``glaviz train`` over finished runs:
a match exits 0 without importing TensorFlow, a difference is named and stops (exit 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glaviz import __version__
from glaviz.config.train import TrainConfig
from glaviz.runs.outputs import output_exists
from glaviz.runs.records import differences, fingerprint, read_record, weights_sha256

RECORD_NAME = "run.json"
BUNDLE_NAME = "model.glaviz"


def train_fingerprint(config: TrainConfig) -> dict[str, Any]:
    """What a training run's bundle depends on (the output folder itself excluded)."""
    settings = json.loads(config.model_dump_json(exclude={"output"}))
    data = config.data
    inputs = {"train": data.train, "val": data.val}
    if data.test is not None:
        inputs["test"] = data.test
    sha = None
    if config.training.weights:
        from glaviz.registry.catalogue import resolve_weights

        sha = weights_sha256(resolve_weights(config.training.weights).path)
    return fingerprint(settings, inputs=inputs, weights_sha256=sha)


def train_record(config: TrainConfig) -> dict[str, Any]:
    """``OUTPUT/run.json`` of a finished run."""
    return {
        "glaviz": __version__,
        "command": "train",
        "config": json.loads(config.model_dump_json()),
        "fingerprint": train_fingerprint(config),
    }


def finished_run(config: TrainConfig) -> Path | None:
    """The bundle of a finished run of exactly ``config`` in its output folder, else ``None``.

    Raises :class:`OutputExistsError` (exit 3) when the folder holds a finished run of something
    else, saying what differs. A folder without a finished run is left to ``train`` itself.
    """
    output = Path(config.output)
    bundle = output / BUNDLE_NAME
    if not bundle.exists():
        return None
    record = read_record(output / RECORD_NAME)
    if record is None or "fingerprint" not in record:
        raise output_exists(
            output,
            "holds a trained model without a run record (an older glaviz, or a stopped run)",
            fix="choose another output folder, or --resume it",
        )
    diffs = differences(record["fingerprint"], train_fingerprint(config))
    if diffs:
        raise output_exists(
            output,
            f"holds a different training run ({'; '.join(diffs)})",
            fix="choose another output folder, or --resume it with the changed settings",
        )
    return bundle

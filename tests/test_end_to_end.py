"""The whole benchmark workflow: train the reduced model, predict the test split, evaluate.

Slow (minutes on two CPU cores): run with ``make test-all`` or ``pytest -m slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glaviz.config import PredictConfig
from glaviz.config.loading import load_train_config as load_config
from glaviz.engine.predict import predict
from glaviz.evaluation.predictions import evaluate_predictions
from glaviz.samples import make_benchmark_splits
from glaviz.training import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.slow
def test_train_predict_evaluate_reaches_iou(tmp_path: Path) -> None:
    splits = make_benchmark_splits(
        tmp_path / "data",
        tiles=(36, 6, 6),
        seed=1,
        tile_size=192,
        patch_size=64,
        regions=("ALP", "HMA", "SC", "NZ", "CA", "SVAL"),
    )
    overrides = [f'data.{name}="{path}"' for name, path in splits.items()]
    overrides.append(f'output="{tmp_path / "run"}"')
    result = train(load_config(CONFIGS / "demo.toml", overrides))
    assert result.best_val_iou >= 0.9
    predictions = tmp_path / "predictions.h5"
    predict(PredictConfig(weights=str(result.bundle), dataset=splits["test"], output=predictions))
    evaluation = evaluate_predictions(predictions=predictions)
    assert evaluation.total.iou is not None and evaluation.total.iou >= 0.9
    assert set(evaluation.regions) <= {"ALP", "HMA", "SC", "NZ", "CA", "SVAL"}

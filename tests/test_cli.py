"""The CLI shell: version, help without TensorFlow, one error line and exit codes, docs coverage."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from glaviz import __version__
from glaviz.cli.app import app, main
from glaviz.errors import ConfigError, InputError

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"glaviz {__version__}"


def test_help_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from glaviz.cli.app import main\n"
        "rc = main(['--help'])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'rasterio', 'h5py') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY [] 0" in out.stdout
    assert "Usage" in out.stdout


@pytest.fixture
def failing_command():
    """Temporarily register a command that raises what the test asks for."""

    def boom(kind: str) -> None:
        if kind == "config":
            raise ConfigError("bad value 'x' for --thing; use one of a, b")
        if kind == "input":
            raise InputError("stack.tif has no CRS; assign one with gdal_edit.py -a_srs")
        raise RuntimeError("something unexpected")

    app.command("boom")(boom)
    yield
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "boom"]


@pytest.mark.parametrize(("kind", "code"), [("config", 2), ("input", 1), ("other", 1)])
def test_errors_are_one_line(failing_command, capsys, kind: str, code: int) -> None:
    assert main(["boom", kind]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "Traceback" not in err


def test_debug_shows_traceback(failing_command, capsys) -> None:
    assert main(["--debug", "boom", "input"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("Error: ")


def test_usage_error_exit_code(capsys) -> None:
    assert main(["--no-such-option"]) == 2
    assert main(["no-such-command"]) == 2


def _commands() -> list[typer.models.CommandInfo]:
    main(["--version"])  # registers the commands
    return [c for c in app.registered_commands if c.name != "boom"]


def test_every_command_has_help_with_example_and_docs(capsys) -> None:
    docs = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    for command in _commands():
        name = command.name or command.callback.__name__.replace("_", "-")
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert re.search(r"Example", text), f"{name} --help has no example"
        assert f"glaviz {name}" in docs, f"docs/ does not describe glaviz {name}"


# ----------------------------------------------------------------------------- command bodies

#: Command module → whether its engine imports TensorFlow (and so prepares it first).
ENGINE_COMMANDS = {
    "deploy": True,
    "predict": True,
    "optimise_bias": True,
    "calibrate": False,
    "evaluate": False,
    "features": False,
    "inventory": False,
}


@pytest.mark.parametrize(("module", "tensorflow"), sorted(ENGINE_COMMANDS.items()))
def test_engine_command_bodies_are_one_call(module: str, tensorflow: bool) -> None:
    """Each body is its help text and ``return run_engine(api.X, config, ...)``: nothing else."""
    import ast
    import importlib
    import inspect
    import textwrap

    body = getattr(importlib.import_module(f"glaviz.cli.commands.{module}"), module)
    (function,) = ast.parse(textwrap.dedent(inspect.getsource(body))).body
    assert isinstance(function, ast.FunctionDef)
    docstring, statement = function.body
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    assert isinstance(statement, ast.Return) and isinstance(statement.value, ast.Call)
    call = statement.value
    assert isinstance(call.func, ast.Name) and call.func.id == "run_engine"
    engine = call.args[0]
    assert isinstance(engine, ast.Attribute) and isinstance(engine.value, ast.Name)
    assert engine.value.id == "api"
    flags = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
    assert flags.get("tensorflow", False) is tensorflow


class _FakeResult:
    def summary(self) -> str:
        return "the summary [with brackets]"

    def to_json(self) -> dict[str, object]:
        return {"outputs": ["x"]}


@pytest.mark.parametrize("tensorflow", [False, True])
def test_run_engine_prints_summary_and_returns_json(monkeypatch, capsys, tensorflow) -> None:
    from glaviz.cli import from_config
    from glaviz.cli.state import state
    from glaviz.config import CalibrateConfig

    prepared: list[bool] = []
    monkeypatch.setattr(from_config, "prepare_tensorflow", lambda: prepared.append(True))
    monkeypatch.setattr(state, "quiet", False)
    calls: list[dict[str, object]] = []

    def engine(config: CalibrateConfig, **kwargs: object) -> _FakeResult:
        calls.append(kwargs)
        return _FakeResult()

    config = CalibrateConfig(predictions=Path("p.h5"), output=Path("c.json"))
    assert from_config.run_engine(engine, config, tensorflow=tensorflow) == {"outputs": ["x"]}
    assert prepared == ([True] if tensorflow else [])
    assert calls == [{"progress": False, "check": False}]
    assert capsys.readouterr().out == "the summary [with brackets]\n"

    rendered: list[object] = []
    from_config.run_engine(engine, config, render=lambda r, c: rendered.append((r, c)))
    assert capsys.readouterr().out == "" and rendered[0][1] is config  # type: ignore[index]
    monkeypatch.setattr(state, "quiet", True)
    from_config.run_engine(engine, config)
    assert capsys.readouterr().out == ""


def test_results_report_the_command_lines() -> None:
    """Every engine result has ``summary()`` (the command's line) and ``to_json()`` (its JSON)."""
    from glaviz.calibration.fit import CalibrationFit
    from glaviz.engine.deploy import DeployResult
    from glaviz.engine.predict import PredictResult
    from glaviz.engine.region_vector import BiasResult
    from glaviz.evaluation import Counts, Evaluation
    from glaviz.features.stack import StackResult
    from glaviz.inventory.build import InventoryResult

    out = Path("out")
    deployed = DeployResult(
        outdir=out,
        outputs=[out / "outlines.tif"],
        windows=6,
        polygons=2,
        glacier_fraction=0.25,
        timings={"loop_s": 3.0},
    )
    assert deployed.summary() == (
        "6 of 6 windows computed in 3.0 s (2.00 windows/s); glacier 25.0 % of valid pixels, "
        "2 polygons; "
        "outputs in out/"
    )
    assert deployed.to_json() == {
        "outdir": "out",
        "outputs": [str(out / "outlines.tif")],
        "counts": {"windows": 6, "polygons": 2, "glacier_fraction": 0.25},
        "timings": {"loop_s": 3.0},
    }
    predicted = PredictResult(path=Path("p.h5"), tiles=3, windows=12, timings={"loop_s": 1.25})
    assert predicted.summary() == "3 tiles (12 windows) predicted in 1.2 s; written to p.h5"
    assert predicted.to_json()["counts"] == {"tiles": 3, "windows": 12}
    bias = BiasResult(
        path=Path("rv.json"),
        region_vector=[0.5, 0.5],
        regions=["A", "B"],
        entropy_before=0.5,
        entropy_after=0.25,
        epochs=4,
        steps_per_epoch=2,
        stopped_early=False,
    )
    assert bias.summary() == (
        "mean entropy 0.5000 → 0.2500 after 4 epochs; region vector written to rv.json"
    )
    assert bias.to_json()["counts"] == {"epochs": 4, "entropy_before": 0.5, "entropy_after": 0.25}
    fit = CalibrationFit(
        model=None,  # type: ignore[arg-type]
        method="isotonic",
        before=None,  # type: ignore[arg-type]
        after=None,  # type: ignore[arg-type]
        ece_before=0.1,
        ece_after=0.02,
        pixels=12345,
        tiles=3,
        output=Path("cal.json"),
        plot=Path("r.png"),
    )
    assert fit.summary() == (
        "ECE (100 bins): 10.00 % before, 2.00 % after isotonic calibration "
        "(12,345 pixels, 3 tiles); wrote cal.json and r.png"
    )
    assert fit.to_json()["outputs"] == ["cal.json", "r.png"]
    stack = StackResult(
        path=Path("s.tif"),
        width=10,
        height=8,
        crs="EPSG:32632",
        bands=("a", "b", "c"),
        groups=("optical", "dem"),
        slope_computed=True,
        seconds=0.5,
    )
    assert stack.summary() == "Wrote s.tif: 10 × 8 px, 3 bands (optical, dem), EPSG:32632, 0.5 s"
    assert stack.to_json()["counts"] == {"width": 10, "height": 8, "bands": 3}
    inventory = InventoryResult(
        output=Path("g.gpkg"),
        record=Path("g.gpkg.run.json"),
        glaciers=5,
        complexes=2,
        vanished=1,
        holes_filled=0,
        methods={"reference": 1, "flowsheds": 1},
        seconds=2.0,
    )
    assert inventory.summary() == (
        "5 glaciers from 2 complexes (1 flowsheds, 1 reference); 1 reference glaciers vanished; "
        "2.0 s; wrote g.gpkg"
    )
    assert inventory.to_json()["outputs"] == ["g.gpkg", "g.gpkg.run.json"]
    scores = Evaluation(total=Counts(tp=1, fp=1, fn=0, tn=2), output=Path("s.json"))
    assert scores.summary() == (
        "IoU 0.5000, precision 0.5000, recall 1.0000, F1 0.6667, accuracy 0.7500 over 4 pixels"
    )
    assert scores.to_json() == {"outputs": ["s.json"], "scores": scores.to_dict()}
    assert Evaluation().to_json()["outputs"] == []

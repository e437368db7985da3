"""One configuration model per command: config files, the command line and --print-config agree.

For every command: a config file and the equivalent command line resolve to the same
configuration; unknown keys, wrong types and out-of-range values are one ``Error:`` line per
field with exit 2; ``--print-config`` output fed back with ``--config`` resolves to the same
configuration. None of this needs data files: ``--print-config`` stops before any work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer

from glaviz.cli.app import app, hoist_global_options, main
from glaviz.config import (
    CalibrateConfig,
    DeployConfig,
    EvaluateConfig,
    FeaturesConfig,
    FetchDatasetConfig,
    FetchWeightsConfig,
    InventoryConfig,
    OptimiseBiasConfig,
    PredictConfig,
)
from glaviz.config.loading import load_config, read_config_file, to_toml
from glaviz.errors import ConfigError

#: command → (model, command-line options, the same as a config file, bad settings and the fields
#: whose error lines they must produce).
CASES = {
    "deploy": (
        DeployConfig,
        ["stack.tif", "--weights", "global", "-o", "out", "--smoothing", "3", "--tta",
         "--features", "optical,dem", "--calibration", "cal/cal.json", "--no-vector"],
        'stack = "stack.tif"\nweights = "global"\noutput = "out"\nsmoothing = 3\ntta = true\n'
        'features = "optical,dem"\ncalibration = "cal/cal.json"\nvector = false\n',
        {"stack": "s.tif", "weights": "w", "smoothin": 1, "mc": "many", "batch_size": 0},
        ["smoothin", "mc", "batch_size"],
    ),
    "features": (
        FeaturesConfig,
        ["-o", "stack.tif", "--optical", "s2.tif", "--elevation", "dem.tif", "--thermal", "t.tif"],
        'output = "stack.tif"\noptical = "s2.tif"\nelevation = "dem.tif"\nthermal = "t.tif"\n',
        {"output": "o.tif", "optical": 3, "elevation": "e.tif", "sar": "x.tif"},
        ["optical", "sar"],
    ),
    "predict": (
        PredictConfig,
        ["--weights", "model.glaviz", "--dataset", "test.h5", "-o", "pred.h5", "--region", "ALP",
         "--region", "NZ", "--mc", "2", "--precision", "bfloat16"],
        'weights = "model.glaviz"\ndataset = "test.h5"\noutput = "pred.h5"\n'
        'region = ["ALP", "NZ"]\nmc = 2\nprecision = "bfloat16"\n',
        {"weights": "w", "dataset": "d.h5", "output": "p.h5", "mc": -1, "precision": "fp8",
         "regions": ["ALP"]},
        ["mc", "precision", "regions"],
    ),
    "evaluate": (
        EvaluateConfig,
        ["--prediction", "out/outlines.tif", "--truth", "rgi.gpkg", "--scores", "scores.json"],
        'prediction = "out/outlines.tif"\ntruth = "rgi.gpkg"\njson_output = "scores.json"\n',
        {"predictions": "p.h5", "json": "x.json", "overwrite": "perhaps"},
        ["json", "overwrite"],
    ),
    "calibrate": (
        CalibrateConfig,
        ["val.h5", "-o", "cal.json", "--bins", "50", "--method", "isotonic", "--plot", "r.png"],
        'predictions = "val.h5"\noutput = "cal.json"\nbins = 50\nmethod = "isotonic"\n'
        'plot = "r.png"\n',
        {"predictions": "v.h5", "output": "c.json", "bins": 1, "method": "platt", "bin": 3},
        ["bins", "method", "bin"],
    ),
    "optimise-bias": (
        OptimiseBiasConfig,
        ["stack.tif", "--weights", "region-encoding", "-o", "rv.json", "--seed", "7",
         "--learning-rate", "0.001"],
        'stack = "stack.tif"\nweights = "region-encoding"\noutput = "rv.json"\nseed = 7\n'
        "learning_rate = 0.001\n",
        {"stack": "s.tif", "weights": "w", "output": "o.json", "epochs": 0,
         "learning_rate": -1.0, "seed": "x"},
        ["epochs", "learning_rate", "seed"],
    ),
    "fetch-weights": (
        FetchWeightsConfig,
        ["global", "--from", "dl/glavitu_global_weights.h5", "--force"],
        'names = ["global"]\nfrom_file = "dl/glavitu_global_weights.h5"\nforce = true\n',
        {"names": 3, "force": "yes please", "mirror": "x"},
        ["names", "force", "mirror"],
    ),
    "fetch-dataset": (
        FetchDatasetConfig,
        ["independent", "--area", "sc1", "--area", "alaska", "--to", "data", "--force"],
        'name = "independent"\narea = ["sc1", "alaska"]\nto = "data"\nforce = true\n',
        {"name": "everything", "area": ["mars"], "folder": "x"},
        ["name", "area.0", "folder"],
    ),
    "inventory": (
        InventoryConfig,
        ["out", "--dem", "dem.tif", "--reference", "rgi.gpkg", "--reference-id", "RGIId",
         "-o", "glaciers.gpkg", "--min-area", "0.05", "--method", "reference"],
        'source = "out"\ndem = "dem.tif"\nreference = "rgi.gpkg"\nreference_id = "RGIId"\n'
        'output = "glaciers.gpkg"\nmin_area_km2 = 0.05\nmethod = "reference"\n',
        {"source": "o", "dem": "d.tif", "output": "g.gpkg", "min_area_km2": -1, "method": "ice",
         "radius": 3},
        ["min_area_km2", "method", "radius"],
    ),
}  # fmt: skip


def _printed(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return tomllib.loads(capsys.readouterr().out)


@pytest.mark.parametrize("command", CASES)
def test_file_and_command_line_resolve_alike(command, tmp_path, monkeypatch, capsys) -> None:
    model, argv, toml, _, _ = CASES[command]
    (tmp_path / "cfg.toml").write_text(toml)
    monkeypatch.chdir(tmp_path)
    from_cli = _printed(capsys, [command, *argv, "--print-config"])
    # The file is read from another working directory: its paths stay relative to the file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from_file = _printed(
        capsys, [command, "--config", str(tmp_path / "cfg.toml"), "--print-config"]
    )
    assert from_cli == from_file
    assert model.model_validate(from_cli) == load_config(model, file=tmp_path / "cfg.toml")
    # Round trip: the printed TOML is itself a config that resolves to the same configuration.
    printed = elsewhere / "printed.toml"
    printed.write_text(to_toml(load_config(model, file=tmp_path / "cfg.toml"), command=command))
    assert _printed(capsys, [command, "--config", str(printed), "--print-config"]) == from_file
    # A JSON file beside the TOML one is the same configuration.
    as_json = tmp_path / "cfg.json"
    as_json.write_text(json.dumps(tomllib.loads(toml)))
    assert _printed(capsys, [command, "--config", str(as_json), "--print-config"]) == from_file


@pytest.mark.parametrize("command", CASES)
def test_bad_settings_are_one_error_line_per_field(command, tmp_path, capsys) -> None:
    _, _, _, bad, fields = CASES[command]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main([command, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert sorted(line.split(":")[1].strip() for line in lines) == sorted(fields), err
    assert all(line.startswith("Error: ") for line in lines)


@pytest.mark.parametrize("command", CASES)
def test_error_lines_as_json(command, tmp_path, capsys) -> None:
    _, _, _, bad, fields = CASES[command]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in bad.items()) + "\n")
    assert main(["--json", command, "--config", str(path)]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "error" and out["exit_code"] == 2
    assert sorted(line.split(":")[0] for line in out["error"]["lines"]) == sorted(fields)


def test_command_line_overrides_file_and_defaults(tmp_path, capsys) -> None:
    cfg = tmp_path / "deploy.toml"
    cfg.write_text('stack = "s.tif"\nweights = "global"\nsmoothing = 3\ntta = true\n')
    printed = _printed(capsys, ["deploy", "--config", str(cfg), "--print-config"])
    assert printed["smoothing"] == 3 and printed["tta"] is True and printed["mc"] == 0
    argv = ["deploy", "--config", str(cfg), "--smoothing", "5", "--no-tta", "--print-config"]
    printed = _printed(capsys, argv)
    assert printed["smoothing"] == 5 and printed["tta"] is False
    assert printed["stack"] == str(tmp_path / "s.tif")  # relative to the file, not the cwd


def test_run_record_is_a_config(tmp_path) -> None:
    record = tmp_path / "run.json"
    record.write_text(
        json.dumps(
            {"glaviz": "x", "config": {"stack": "/data/s.tif", "weights": "hma"}, "windows": 4}
        )
    )
    assert read_config_file(record) == {"stack": "/data/s.tif", "weights": "hma"}
    config = load_config(DeployConfig, file=record)
    assert config.outdir == Path("/data/s.glaviz")
    record.write_text(json.dumps({"fingerprint": {}, "settings": {}}))
    with pytest.raises(ConfigError, match="without a 'config' section"):
        read_config_file(record)


def test_unreadable_config_files(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("stack = [unterminated\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(DeployConfig, file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(DeployConfig, file=tmp_path / "none.toml")


def test_toml_values_round_trip() -> None:
    config = DeployConfig(stack=Path('/d/"odd" name\\x.tif'), weights="hma", smoothing=2)
    assert DeployConfig.model_validate(tomllib.loads(to_toml(config))) == config


def test_registry_names_stay_names_and_paths_become_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.glaviz").write_text("x")
    config = load_config(DeployConfig, cli={"stack": "s.tif", "weights": "global"})
    assert config.weights == "global" and config.stack == tmp_path / "s.tif"
    config = load_config(DeployConfig, cli={"stack": "s.tif", "weights": "model.glaviz"})
    assert config.weights == str(tmp_path / "model.glaviz")
    config = load_config(
        DeployConfig, cli={"stack": "s.tif", "weights": "w", "calibration": "none"}
    )
    assert config.calibration == "none"


# ------------------------------------------------------------------------------ the one definition


def _generated() -> dict[str, tuple[type, object]]:
    main(["--version"])  # registers the commands
    group = typer.main.get_command(app)
    models = {name: case[0] for name, case in CASES.items()}
    return {name: (models[name], group.commands[name]) for name in models}  # type: ignore[attr-defined]


def test_every_field_is_one_option_with_its_description() -> None:
    for name, (model, command) in _generated().items():
        params = {p.name: p for p in command.params}
        extra = {"glaviz_config_file", "glaviz_print_config"}
        assert set(params) == set(model.model_fields) | extra, name
        for field, info in model.model_fields.items():
            assert params[field].help == info.description, (name, field)


def test_help_documents_exit_codes_and_ends_with_example(capsys) -> None:
    for name in CASES:
        assert main([name, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "Exit codes: 0 done or skipped" in text and "3 output exists" in text, name
        assert text.index("Exit codes") < text.index("Example:"), name


# --------------------------------------------------------------------------------- global options


def test_global_options_move_before_the_command() -> None:
    assert hoist_global_options(["deploy", "s.tif", "-q", "--json", "-vv"]) == [
        "-q", "--json", "-vv", "deploy", "s.tif",
    ]  # fmt: skip
    assert hoist_global_options(["--debug", "deploy", "s.tif"]) == ["--debug", "deploy", "s.tif"]
    # evaluate's own --json FILE stays with evaluate; nothing after -- moves.
    assert hoist_global_options(["evaluate", "p.h5", "--json", "x.json", "-q"]) == [
        "-q", "evaluate", "p.h5", "--json", "x.json",
    ]  # fmt: skip
    assert hoist_global_options(["fetch-weights", "--", "-q"]) == ["fetch-weights", "--", "-q"]
    assert hoist_global_options(["--version"]) == ["--version"]


def test_quiet_after_the_command(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('stack = "s.tif"\nweights = "global"\n')
    assert main(["deploy", "--config", str(cfg), "--print-config", "-q", "--debug"]) == 0
    assert "stack = " in capsys.readouterr().out


def test_import_glaviz_is_light_and_exposes_the_api() -> None:
    code = (
        "import sys, glaviz\n"
        "assert glaviz.DeployConfig and glaviz.deploy and glaviz.open_result and glaviz.predict\n"
        "print([m for m in ('tensorflow', 'rasterio', 'h5py', 'xarray') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_error_lines_say_where_each_value_came_from(tmp_path, capsys) -> None:
    cfg = tmp_path / "deploy.toml"
    cfg.write_text('stack = "s.tif"\nweights = "global"\nsmoothing = -1\n')
    assert main(["deploy", "--config", str(cfg), "--batch-size", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("Error: smoothing:") and f"(in {cfg})" in line for line in lines)
    assert any(
        line.startswith("Error: batch_size:") and "(on the command line)" in line for line in lines
    )


def test_batch_job_files_use_the_same_error_lines(tmp_path) -> None:
    from glaviz.config.batch import load_job

    job = tmp_path / "job.toml"
    job.write_text('output = "o"\n[[scene]]\nid = "a"\nstak = "a.tif"\n')
    with pytest.raises(ConfigError) as info:
        load_job(job)
    message = str(info.value)
    assert message.startswith(f"job file {job}: ") and "\n" not in message
    assert "scene.0.stak: unknown setting; did you mean scene.0.stack?" in message

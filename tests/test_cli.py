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

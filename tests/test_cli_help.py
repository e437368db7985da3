"""Help and usage errors as scripts and 80-column terminals see them.

Help is rendered the way a user gets it through a pipe (a subprocess, ``COLUMNS`` set), for the
app and every command, and checked against the click commands it was made from: every option
name whole, every character of every help text kept (``[deploy]`` is text, not markup), no
``<bool>`` beside a flag. Usage errors are one ``Error:`` line, like every other error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer

from glaviz.cli.app import app, main

#: Renders ``glaviz --help`` and ``glaviz NAME --help`` for each NAME given, each after a marker.
_RENDER = """
import sys
from glaviz.cli.app import main
for name in sys.argv[1:]:
    print(f"=== {name}", flush=True)
    main([name, "--help"] if name != "glaviz" else ["--help"])
    sys.stdout.flush()
"""


def _group() -> Any:
    main(["--version"])  # registers the commands
    return typer.main.get_command(app)


def _commands() -> dict[str, Any]:
    """``glaviz`` (the group) and every command, by name, as the click objects help is made of."""
    group = _group()
    return {"glaviz": group, **{name: group.commands[name] for name in sorted(group.commands)}}


def _render(columns: int) -> dict[str, str]:
    """Every help page as printed into a pipe with ``COLUMNS=columns``, by command name."""
    env = {k: v for k, v in os.environ.items() if k not in ("TERMINAL_WIDTH", "FORCE_COLOR")}
    env |= {"COLUMNS": str(columns), "LINES": "40"}
    done = subprocess.run(
        [sys.executable, "-c", _RENDER, *_commands()],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    pages = re.split(r"^=== (\S+)\n", done.stdout, flags=re.MULTILINE)[1:]
    return dict(zip(pages[::2], pages[1::2], strict=True))


@pytest.fixture(scope="module")
def pages_80() -> dict[str, str]:
    return _render(80)


def _compact(text: str) -> str:
    """Text without whitespace: wrapping moves line breaks and indents, never characters."""
    return "".join(text.split())


def _whole(name: str, page: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page) is not None


def test_every_option_name_is_whole_when_piped(pages_80: dict[str, str]) -> None:
    """At 80 columns (where rich's panels cut ``--sliver-compact…``) and on a wide terminal."""
    commands = _commands()
    for columns, pages in ((80, pages_80), (200, _render(200))):
        assert set(pages) == set(commands)
        for name, command in commands.items():
            page = pages[name]
            for param in command.params:
                for opt in [*param.opts, *param.secondary_opts]:
                    if opt.startswith("-"):
                        assert _whole(opt, page), f"glaviz {name} --help: {opt} cut ({columns})"
            too_wide = [line for line in page.splitlines() if len(line) > columns]
            assert not too_wide, f"glaviz {name} --help is wider than {columns}: {too_wide}"
            # Nor is a name (or any word) in the help text split at a hyphen: ``--no-`` / ``tta``.
            split = re.findall(r"^.*\w-$", page, re.MULTILINE)
            assert not split, f"glaviz {name} --help breaks a line at a hyphen: {split}"


def test_help_keeps_every_character_of_every_help_text(pages_80: dict[str, str]) -> None:
    """Docstrings, option and argument help are printed as written: brackets are not markup."""
    commands = _commands()
    for name, command in commands.items():
        page = _compact(pages_80[name])
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        if name == "glaviz":  # the list of commands: each one's first paragraph, whole
            texts += [(c.help or "").split("\n\n")[0] for c in command.commands.values()]
        for text in texts:
            assert _compact(text) in page, f"glaviz {name} --help lost part of: {text!r}"
    assert "output, [deploy], [features], scenes" in " ".join(pages_80["batch"].split())
    assert "--method [auto|reference|dem]" in pages_80["inventory"]


def test_flags_show_no_value_placeholder(pages_80: dict[str, str]) -> None:
    for name, page in pages_80.items():
        assert "<bool>" not in page, f"glaviz {name} --help shows <bool> beside a flag"
    main_page = pages_80["glaviz"]
    assert re.search(r"^  -v, --verbose +More log output \(-vv for debug\)\.$", main_page, re.M)
    assert re.search(r"^  -q, --quiet +Only print errors\.$", main_page, re.M)
    assert re.search(r"^  --overwrite / --no-overwrite +Replace", pages_80["deploy"], re.M)


@pytest.mark.parametrize(
    ("argv", "problem", "hint"),
    [
        (["--no-such-option"], "No such option: --no-such-option", "glaviz --help"),
        (["no-such-command"], "No such command 'no-such-command'", "glaviz --help"),
        (["deploy", "s.tif", "--bogus"], "No such option: --bogus", "glaviz deploy --help"),
        (["batch"], "Missing argument 'JOB'", "glaviz batch --help"),
        (["batch", "job.toml", "--workers"], "'--workers' requires an argument", "batch --help"),
        (["deploy", "s.tif", "--batch-size", "x"], "Invalid value for '--batch-size'", "deploy"),
        (["evaluate", "--scores"], "'--scores' requires an argument", "glaviz evaluate --help"),
        (["-q", "deploy", "--bogus"], "No such option: --bogus", "glaviz deploy --help"),
    ],
)
def test_usage_errors_are_one_error_line(argv: list[str], problem: str, hint: str, capsys) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("Error: ") and problem in line and f"{hint}" in line, line
    assert line.endswith(" --help)")


def test_usage_error_as_json_is_one_object(capsys) -> None:
    import json

    assert main(["--json", "deploy", "--bogus"]) == 2
    out, err = capsys.readouterr()
    failed = json.loads(out)
    assert failed["status"] == "error" and failed["exit_code"] == 2
    assert failed["error"]["lines"] == [err.strip().removeprefix("Error: ")]


def test_old_evaluate_json_spelling_is_renamed_only_with_a_value() -> None:
    from glaviz.cli.app import hoist_global_options, rename_old_spellings

    def parsed(*argv: str) -> tuple[list[str], int]:
        args, warnings = rename_old_spellings(hoist_global_options(list(argv)))
        return args, len(warnings)

    assert parsed("evaluate", "p.h5", "--json", "s.json") == (
        ["evaluate", "p.h5", "--scores", "s.json"],
        1,
    )
    assert parsed("evaluate", "p.h5", "--json", "-", "-q") == (
        ["-q", "evaluate", "p.h5", "--scores", "-"],
        1,
    )
    renamed = ["evaluate", "p.h5", "--scores=s.json"]
    assert parsed("evaluate", "p.h5", "--json=s.json") == (renamed, 1)
    # Alone, or before another option, --json is the global flag; after --, nothing is touched.
    assert parsed("evaluate", "p.h5", "--json") == (["--json", "evaluate", "p.h5"], 0)
    assert parsed("evaluate", "--json", "-q", "p.h5") == (["--json", "-q", "evaluate", "p.h5"], 0)
    assert parsed("evaluate", "--", "--json", "x") == (["evaluate", "--", "--json", "x"], 0)
    # Other commands have no file option called --json.
    assert parsed("deploy", "s.tif", "--json", "x") == (["--json", "deploy", "s.tif", "x"], 0)

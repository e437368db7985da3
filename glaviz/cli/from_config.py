"""Typer commands generated from a command's configuration model.

The model is the one definition of a command's options: each field becomes one option (or a
positional argument), with the field's description as help text. Every generated command also
takes ``--config FILE`` and ``--print-config``; values come from defaults < the file < the options
actually typed (click knows which those are), validated once. Existing outputs are handled before
the command body runs, by :func:`glaviz.runs.records.prepare_outputs`, so ``--skip-existing``
never pays for a TensorFlow import. A command over an engine of :mod:`glaviz.api` has one line
of body, :func:`run_engine`: the engine's result says what to print and what ``--json`` gets.
"""

from __future__ import annotations

import datetime as dt
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from pydantic.fields import FieldInfo

from glaviz.cli.app import COMMAND_OWNED, RENAMED, app
from glaviz.cli.state import prepare_tensorflow, say, state
from glaviz.config.base import CommandConfig
from glaviz.errors import exit_codes_help

if TYPE_CHECKING:
    from glaviz.api import CommandResult
    from glaviz.runs.records import Skipped

C = TypeVar("C", bound=CommandConfig)
R = TypeVar("R", bound="CommandResult")

_CONFIG_PARAM, _PRINT_PARAM = "glaviz_config_file", "glaviz_print_config"
_KW = inspect.Parameter.KEYWORD_ONLY
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")


def config_command(
    name: str,
    model: type[C],
    *,
    arguments: Mapping[str, str] = {},
    options: Mapping[str, Sequence[str]] = {},
    renamed: Mapping[str, str] = {},
    check_outputs: bool = True,
) -> Callable[[Callable[[C], Any]], Callable[[C], Any]]:
    """Register ``body(config)`` as command ``name`` with options generated from ``model``.

    ``arguments``: fields that are positional arguments, with their metavar. ``options``: option
    names for fields whose name is not ``--field-name`` (e.g. ``{"output": ["--output", "-o"]}``).
    ``renamed``: old option names still accepted with a value and a warning, old → new
    (``{"--json": "--scores"}``; see :data:`glaviz.cli.app.RENAMED`).
    ``body`` returns a dict for the ``--json`` object (outputs, counts, timings) or None.
    """
    taken = {o for names in options.values() for o in names}
    COMMAND_OWNED[name] = frozenset(taken)
    RENAMED[name] = dict(renamed)
    spelling = {f: n[0] for f, n in options.items()} | dict(arguments)

    def decorate(body: Callable[[C], Any]) -> Callable[[C], Any]:
        params, hints = [], {}
        order = [*arguments, *(f for f in model.model_fields if f not in arguments)]
        for field_name in order:
            annotation, default = _parameter(
                field_name,
                model.model_fields[field_name],
                argument=arguments.get(field_name),
                decls=options.get(field_name),
            )
            params.append(
                inspect.Parameter(field_name, _KW, default=default, annotation=annotation)
            )
            hints[field_name] = annotation
        for pname, annotation in _common_parameters(name).items():
            default = False if pname == _PRINT_PARAM else None
            params.append(inspect.Parameter(pname, _KW, default=default, annotation=annotation))
            hints[pname] = annotation
        params.insert(0, inspect.Parameter("ctx", _KW, annotation=typer.Context))
        hints["ctx"] = typer.Context

        def command(ctx: typer.Context, **values: Any) -> dict[str, Any] | None:
            from glaviz.config.loading import load_config, to_toml

            config_file = values.pop(_CONFIG_PARAM)
            print_config = values.pop(_PRINT_PARAM)
            given = {
                k: v
                for k, v in values.items()
                if (source := ctx.get_parameter_source(k)) is not None and source.name in _GIVEN
            }
            config = load_config(model, file=config_file, cli=given, cli_names=spelling)
            if print_config:
                if state.json:
                    return {"status": "done", "config": config.model_dump(mode="json")}
                typer.echo(to_toml(config, command=name), nl=False)
                return None
            if check_outputs:
                from glaviz.runs.records import Skipped, prepare_outputs

                prepared = prepare_outputs(config)
                if isinstance(prepared, Skipped):
                    if not state.quiet:
                        say(prepared.message())
                    return {"status": "skipped", **prepared.to_dict()}
                config = prepared
            payload = body(config)
            return {"status": "done", **(payload or {})}

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = hints
        command.__name__ = body.__name__
        command.__doc__ = help_text(body.__doc__ or "")
        app.command(name)(command)
        return body

    return decorate


def run_engine(
    engine: Callable[..., R | Skipped],
    config: C,
    *,
    tensorflow: bool = False,
    render: Callable[[R, C], None] | None = None,
) -> dict[str, Any]:
    """The body of a command over an engine of :mod:`glaviz.api`: run it, report, return its JSON.

    ``tensorflow``: the engine starts TensorFlow (after its own checks that need none, so a typo
    costs well under a second); it does so quietly unless ``--debug``. The result's ``summary()``
    is printed unless ``-q``;
    ``render(result, config)`` replaces that for a command with its own output (evaluate's table),
    and is called under ``-q`` too, deciding itself what to print. Returns ``to_json()``.
    """
    from glaviz.runs.records import Skipped

    if tensorflow:
        prepare_tensorflow()
    # check=False: config_command applied --skip-existing/--overwrite before the body ran.
    result = engine(config, progress=state.show_progress, check=False)
    assert not isinstance(result, Skipped)
    if render is not None:
        render(result, config)
    elif not state.quiet:
        say(result.summary())
    return result.to_json()


def help_text(doc: str) -> str:
    """The body's docstring with the exit codes inserted before its closing example(s)."""
    # One line per paragraph: the help formatter wraps each paragraph to the terminal's width.
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    doc = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    head, sep, example = doc.partition("\n\nExample")
    if not sep:
        return f"{doc}\n\n{exit_codes_help()}"
    return f"{head}\n\n{exit_codes_help()}\n\nExample{example}"


def _common_parameters(command: str) -> dict[str, Any]:
    return {
        _CONFIG_PARAM: Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="TOML or JSON file of these options (a run.json re-runs its run); options "
                "on the command line override it. Paths in it are relative to the file.",
                metavar="FILE",
                dir_okay=False,
                show_default=False,
            ),
        ],
        _PRINT_PARAM: Annotated[
            bool,
            typer.Option(
                "--print-config",
                help=f"Print the resolved configuration as TOML and exit (a file for "
                f"glaviz {command} --config).",
            ),
        ],
    }


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _parameter(
    name: str, field: FieldInfo, *, argument: str | None, decls: Sequence[str] | None
) -> tuple[Any, Any]:
    """The Typer annotation and default of one field's option or argument."""
    base = _unwrap_optional(field.annotation)
    origin = typing.get_origin(base)
    help_text = field.description or ""
    default = None if field.is_required() else field.default
    show_default = default not in (None, (), []) and not isinstance(default, bool)
    metavar = None
    cli_type: Any
    if base is bool:
        cli_type = bool
    elif origin is Literal:
        cli_type = str
        metavar = "[" + "|".join(str(a) for a in typing.get_args(base)) + "]"
    elif base is dt.date:  # click has no date type: pydantic parses the text, with its message
        cli_type = str
        metavar = "YYYY-MM-DD"
    elif origin is tuple:  # feature groups: one comma-separated value
        cli_type = str
        metavar = "GROUP,GROUP"
    elif origin is list:
        item = typing.get_args(base)[0]
        if typing.get_origin(item) is Literal:  # repeatable choice: click takes strings,
            metavar = "[" + "|".join(str(a) for a in typing.get_args(item)) + "]"
            item = str  # pydantic checks the choices with the field's own message
        cli_type = list[item]  # type: ignore[valid-type]
    else:
        cli_type = base
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "metavar" in extra:  # a field that names its own (``--bbox W,S,E,N``)
        metavar = str(extra["metavar"])

    if argument is not None:
        if origin in (list, tuple):  # NAME...: any number of positional values
            cli_type = list[str]
        info: Any = typer.Argument(help=help_text, metavar=argument, show_default=False)
        return Annotated[cli_type | None, info], None
    if cli_type is bool:
        flag = "--" + name.replace("_", "-")
        names = list(decls) if decls else [f"{flag}/--no-{flag[2:]}"]
        info = typer.Option(*names, help=help_text, show_default=False)
        return Annotated[bool, info], bool(default)
    names = list(decls) if decls else ["--" + name.replace("_", "-")]
    info = typer.Option(*names, help=help_text, metavar=metavar, show_default=show_default)
    # Only values the user typed count (click reports each value's source), so the default here
    # is for the help text; list defaults stay None (click would turn them into tuples).
    return Annotated[
        cli_type | None, info
    ], default if show_default and origin is not list else None

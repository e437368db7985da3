"""Config files and the command line, merged into one validated command configuration.

Precedence is defaults < config file < command line: the caller passes only the options the user
actually typed, so a file's value is never replaced by an option's default. A config file is TOML
or JSON; a run record (``run.json``, whose ``config`` section is the resolved configuration of the
run) is a valid config file too, which is what makes a finished run re-runnable. Relative paths in
a file are relative to the file; relative paths on the command line are relative to the working
directory. Both end up absolute, so a resolved configuration means the same thing wherever it is
used again (``--print-config`` output, run records).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from glaviz.config.base import CommandConfig
from glaviz.errors import ConfigError

C = TypeVar("C", bound=CommandConfig)


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML or JSON config file, or in a run record's ``config`` section."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings, not {type(data)}")
    if "fingerprint" in data or isinstance(data.get("config"), dict):
        # A run record: its ``config`` section is the configuration of the recorded run.
        if not isinstance(data.get("config"), dict):
            raise ConfigError(
                f"{path} is a run record without a 'config' section (written by an older glaviz); "
                "it cannot be re-run, give the options instead"
            )
        data = data["config"]
    return dict(data)


def absolute_paths(
    model: type[CommandConfig], data: Mapping[str, Any], base: Path
) -> dict[str, Any]:
    """``data`` with relative paths made absolute against ``base`` (a file's folder or the cwd).

    Name-or-path fields (``weights``, ``calibration``) are made absolute only when they look like
    a path or name an existing file relative to ``base``, so ``global`` stays a registry name.
    """
    out = dict(data)
    for name in model.path_fields():
        value = out.get(name)
        if isinstance(value, str | os.PathLike) and str(value) != "-":
            out[name] = _absolute(value, base)
        elif isinstance(value, list):
            out[name] = [
                _absolute(v, base) if isinstance(v, str | os.PathLike) else v for v in value
            ]
    for name in model.NAME_OR_PATH_FIELDS:
        value = out.get(name)
        if isinstance(value, str | os.PathLike) and _looks_like_path(str(value), base):
            out[name] = str(_absolute(value, base))
    return out


def _absolute(value: str | os.PathLike[str], base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _looks_like_path(text: str, base: Path) -> bool:
    if not text:
        return False
    if any(sep in text for sep in ("/", os.sep)) or text.startswith("~"):
        return True
    return (base / text).exists()


def load_config(
    model: type[C],
    *,
    file: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    cli_names: Mapping[str, str] | None = None,
) -> C:
    """Defaults < ``file`` < ``cli`` (only options given on the command line), validated once."""
    data: dict[str, Any] = {}
    if file is not None:
        file = Path(file)
        data.update(absolute_paths(model, read_config_file(file), file.resolve().parent))
    if cli:
        data.update(absolute_paths(model, cli, (cwd or Path.cwd()).resolve()))
    source = str(file) if file is not None else None
    return validate(model, data, source=source, cli_names=cli_names)


def validate(
    model: type[C],
    data: Mapping[str, Any],
    *,
    source: str | None = None,
    cli_names: Mapping[str, str] | None = None,
) -> C:
    """Validate ``data``; every problem becomes one line of one :class:`ConfigError`.

    ``cli_names`` spell fields as the command line does (``stack`` → ``STACK``) in the hints.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        lines = error_lines(exc, model, source=source, cli_names=cli_names)
        raise ConfigError("\n".join(lines)) from None


def error_lines(
    exc: ValidationError,
    model: type[CommandConfig],
    *,
    source: str | None,
    cli_names: Mapping[str, str] | None = None,
) -> list[str]:
    """One ``<field>: <message>`` line per problem, naming the value received and the fix."""
    where = f" (in {source})" if source else ""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, model.model_fields, n=1)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else "known settings are " + ", ".join(model.model_fields)
            )
            msg = f"unknown setting{where}; {hint}"
        elif err["type"] == "missing":
            option = (cli_names or {}).get(loc) or "--" + loc.replace("_", "-")
            msg = f"required; give {option} on the command line or set {loc} in a --config file"
        elif "input" in err and not isinstance(err["input"], dict):
            msg = f"{msg}, got {err['input']!r}{where}"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


# --------------------------------------------------------------------------------------------------
# TOML output (flat models only: every command's options are scalars, paths and lists)


def to_toml(config: CommandConfig, *, command: str | None = None) -> str:
    """The configuration as a TOML file that ``--config`` reads back to the same configuration.

    Unset (None) options are written as comments, so the file also lists what can be set.
    """
    from glaviz import __version__

    lines = []
    if command:
        lines.append(f"# glaviz {command} configuration (glaviz {__version__})")
        lines.append(f"# re-run with: glaviz {command} --config THIS_FILE")
    data = config.model_dump(mode="json")
    for name, field in type(config).model_fields.items():
        value = data[name]
        if value is None:
            lines.append(f"# {name} = ...  ({field.description or 'not set'})")
        else:
            lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """One TOML value: strings, booleans, numbers and arrays of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes (\", \\, \n, \uXXXX) are valid TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as TOML")

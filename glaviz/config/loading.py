"""The one reader of configuration: config files, ``--set`` overrides and the command line,
merged into one validated model.

Precedence is defaults < config file < ``--set KEY=VALUE`` overrides < command-line options: the
caller passes only the options the user actually typed, so a file's value is never replaced by an
option's default. A config file is TOML or JSON; a run record (``run.json``, whose ``config``
section is the resolved configuration of the run) is a valid config file too, which is what makes
a finished run re-runnable. Relative paths in a file are relative to the file; relative paths on
the command line (options and ``--set``) are relative to the working directory. Both end up
absolute, so a resolved configuration means the same thing wherever it is used again
(``--print-config`` output, run records). Nested models (``glaviz train``'s ``[data]``,
``[training]`` …) are read the same way, their fields named by dotted keys (``training.epochs``).

Every validation problem, from any caller (command options, train configs, batch job files),
goes through :func:`error_lines`: one ``<key>: <problem>`` line naming the value received, where
it came from and how to fix it.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import tomllib
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from glaviz.config.base import is_path_annotation
from glaviz.config.train import TrainConfig
from glaviz.errors import ConfigError

if TYPE_CHECKING:
    from glaviz.config.base import CommandConfig

M = TypeVar("M", bound=BaseModel)

#: How the command line spells a field: a mapping of field → option (``stack`` → ``STACK``; fields
#: not in it are ``--field-name``), or a function of the dotted key (``glaviz train``'s ``--set``).
CliNames = Mapping[str, str] | Callable[[str], str]


# --------------------------------------------------------------------------------------------------
# Reading


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


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.patch_size=64"`` → ``(["model", "patch_size"], 64)``; values are TOML.

    A value that is not valid TOML (``data.train=splits/train.h5``) is taken as a string, so
    paths and names need no quotes on the command line.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.epochs=3")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"--set {item!r}: {key!r} is not a dotted key like training.epochs")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``data`` (not changed) with ``--set KEY=VALUE`` items applied in order."""
    out = copy.deepcopy(dict(data))
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


# --------------------------------------------------------------------------------------------------
# Paths


def absolute_paths(model: type[BaseModel], data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with relative paths made absolute against ``base`` (a file's folder or the cwd).

    Fields typed as paths are made absolute, in nested sections too. Name-or-path fields (a
    model's ``NAME_OR_PATH_FIELDS``: ``weights``, ``calibration``) are made absolute only when they
    look like a path or name an existing file relative to ``base``, so ``global`` stays a registry
    name.
    """
    out = dict(data)
    names_or_paths = getattr(model, "NAME_OR_PATH_FIELDS", frozenset())
    for name, field in model.model_fields.items():
        value = out.get(name)
        section = _section_model(field.annotation)
        if section is not None and isinstance(value, Mapping):
            out[name] = absolute_paths(section, value, base)
        elif is_path_annotation(field.annotation):
            if isinstance(value, str | os.PathLike) and str(value) != "-":
                out[name] = _absolute(value, base)
            elif isinstance(value, list):
                out[name] = [
                    _absolute(v, base) if isinstance(v, str | os.PathLike) else v for v in value
                ]
        elif (
            name in names_or_paths
            and isinstance(value, str | os.PathLike)
            and _looks_like_path(str(value), base)
        ):
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
    return (base / text).is_file()  # a folder named like a model does not shadow the name


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested section (``DataSection``), also inside ``X | None`` or ``list[X]``."""
    if typing.get_origin(annotation) is None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None
    for arg in typing.get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def _relative_paths(
    model: type[BaseModel], data: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` of every relative path in ``data`` (a file's raw settings)."""
    names_or_paths = getattr(model, "NAME_OR_PATH_FIELDS", frozenset())
    for name, field in model.model_fields.items():
        value, key = data.get(name), prefix + name
        section = _section_model(field.annotation)
        if section is not None and isinstance(value, Mapping):
            yield from _relative_paths(section, value, key + ".")
        elif is_path_annotation(field.annotation) or name in names_or_paths:
            values = value if isinstance(value, list) else [value]
            for item in values:
                relative = isinstance(item, str) and not Path(item).expanduser().is_absolute()
                if relative and item not in ("", "-"):
                    yield key, item


def _check_file_relative(
    model: type[BaseModel],
    raw: Mapping[str, Any],
    *,
    file: Path,
    cwd: Path,
    overridden: set[str],
) -> None:
    """Refuse a path that exists only the way ``glaviz train`` read paths before this release.

    Train config files used to take relative paths from the working directory. A path that is
    missing next to the file but present in the working directory is almost certainly such a
    file: failing here, with the path to write, beats a missing-file error later (or a new run in
    an unexpected ``output`` folder).
    """
    folder = file.resolve().parent
    if folder == cwd:
        return
    for key, value in _relative_paths(model, raw):
        if key in overridden or (folder / value).exists():
            continue
        old = Path(os.path.normpath(cwd / value))
        if old.exists():
            fix = toml_value(os.path.relpath(old, folder))
            raise ConfigError(
                f"{key} = {toml_value(value)} in {file} is not found next to that file: paths in "
                "config files are now relative to the config file (since this release; glaviz "
                f"train used the working directory before), so write {key} = {fix} or the "
                f"absolute path {toml_value(str(old))}"
            )


# --------------------------------------------------------------------------------------------------
# Merging and validating


def load_config(
    model: type[M],
    *,
    file: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    cli_names: CliNames | None = None,
) -> M:
    """``defaults`` < ``file`` < ``overrides`` (``--set KEY=VALUE``) < ``cli``, validated once.

    ``cli`` holds only the options given on the command line (nested sections as dicts). Paths
    in ``file`` are relative to the file, those in ``overrides`` and ``cli`` to ``cwd``.
    ``defaults`` are values that only apply when neither the file nor the command line sets them
    (``glaviz train --weights`` implies ``training.strategy = "finetune"``).
    """
    cwd = (cwd or Path.cwd()).resolve()
    data: dict[str, Any] = dict(defaults or {})
    origins: dict[str, str] = {}
    upper: dict[str, Any] = {}
    overrides = list(overrides)
    if overrides:
        upper = absolute_paths(model, apply_overrides({}, overrides), cwd)
        origins.update(dict.fromkeys(_keys(upper), "from --set"))
    if cli:
        upper = _merge(upper, absolute_paths(model, cli, cwd))
        origins.update(dict.fromkeys(_keys(cli), "on the command line"))
    source = None
    if file is not None:
        file = Path(file)
        source = str(file)
        raw = read_config_file(file)
        if getattr(model, "CWD_RELATIVE_UNTIL_NOW", False):
            _check_file_relative(model, raw, file=file, cwd=cwd, overridden=set(_keys(upper)))
        data = _merge(data, absolute_paths(model, raw, file.resolve().parent))
        origins = dict.fromkeys(_keys(raw), f"in {file}") | origins
    data = _merge(data, upper)
    return validate(model, data, source=source, origins=origins, cli_names=cli_names)


def load_train_config(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    weights: str | None = None,
    cwd: Path | None = None,
) -> TrainConfig:
    """``glaviz train CONFIG [--set KEY=VALUE …] [--weights W]`` as one :class:`TrainConfig`.

    :func:`load_config` with train's command line: ``--set`` items, then ``--weights``, which sets
    ``training.weights`` and makes the run a fine-tuning run unless the file or a ``--set`` names
    a strategy.
    """
    return load_config(
        TrainConfig,
        file=Path(path),
        overrides=overrides,
        cli={"training": {"weights": weights}} if weights else None,
        defaults={"training": {"strategy": "finetune"}} if weights else None,
        cwd=cwd,
        cli_names=lambda key: f"--set {key}=…",
    )


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; sections (dicts) present in both are merged key by key."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out


def _keys(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every dotted key of ``data``: sections and the settings in them."""
    for key, value in data.items():
        yield prefix + str(key)
        if isinstance(value, Mapping):
            yield from _keys(value, f"{prefix}{key}.")


def validate(
    model: type[M],
    data: Mapping[str, Any],
    *,
    source: str | None = None,
    origins: Mapping[str, str] | None = None,
    cli_names: CliNames | None = None,
) -> M:
    """Validate ``data``; every problem becomes one line of one :class:`ConfigError`.

    See :func:`error_lines` for ``source``, ``origins`` and ``cli_names``.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        lines = error_lines(exc, model, source=source, origins=origins, cli_names=cli_names)
        raise ConfigError("\n".join(lines)) from None


def error_summary(exc: ValidationError, model: type[BaseModel]) -> str:
    """:func:`error_lines` on one line, for messages that carry their own context (batch jobs)."""
    return "; ".join(error_lines(exc, model))


def error_lines(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    source: str | None = None,
    origins: Mapping[str, str] | None = None,
    cli_names: CliNames | None = None,
) -> list[str]:
    """One ``<key>: <problem>`` line per problem, naming the value received and the fix.

    ``source``: the config file the values came from; ``origins``: where individual dotted keys
    came from (``"in run.toml"``, ``"from --set"``), overriding ``source`` for those keys;
    ``cli_names``: how the command line spells a field, for the hint of a missing one (None: the
    values have no command line). Unknown keys get the closest known key of their section.
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        origin = _origin(loc, origins or {}) or (f"in {source}" if source else None)
        where = f" ({origin})" if origin else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting{where}; {_known_hint(model, err['loc'])}"
        elif err["type"] == "missing":
            msg = _missing_hint(model, err["loc"], source=source, cli_names=cli_names)
        elif not loc:  # a rule across settings (strategy vs. regions): the file is the context
            msg = f"{msg}{where}"
        elif "input" in err and not isinstance(err["input"], dict):
            # Custom rules usually name the value themselves ("got 100"); say it only once.
            got = "" if "got " in msg else f", got {err['input']!r}"
            msg = f"{msg}{got}{where}"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def _origin(loc: str, origins: Mapping[str, str]) -> str | None:
    """Where the value at dotted ``loc`` came from: its own entry or its nearest section's."""
    parts = loc.split(".")
    for end in range(len(parts), 0, -1):
        found = origins.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel], loc: Iterable[str | int]) -> type[BaseModel] | None:
    """The (sub)model whose fields ``loc`` leads into (list indices skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        current = _section_model(field.annotation) if field is not None else None
        if current is None:
            return None
    return current


def _known_hint(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """``did you mean training.batch_size?``, or the settings of the unknown key's section."""
    section = _model_at(model, loc[:-1])
    if section is None:
        return "check the spelling"
    prefix = ".".join(str(p) for p in loc[:-1])
    prefix = f"{prefix}." if prefix else ""
    close = difflib.get_close_matches(str(loc[-1]), section.model_fields, n=1)
    if close:
        return f"did you mean {prefix}{close[0]}?"
    return "known settings are " + ", ".join(prefix + f for f in section.model_fields)


def _missing_hint(
    model: type[BaseModel],
    loc: tuple[str | int, ...],
    *,
    source: str | None,
    cli_names: CliNames | None,
) -> str:
    key = ".".join(str(p) for p in loc)
    parent = _model_at(model, loc[:-1])
    field = parent.model_fields.get(str(loc[-1])) if parent is not None and loc else None
    if field is not None and _section_model(field.annotation) is not None:
        return f"required section [{key}] is missing" + (f" in {source}" if source else "")
    if cli_names is None:
        return "required setting is missing" + (f"; set {key} in {source}" if source else "")
    if callable(cli_names):
        option = cli_names(key)
    else:
        option = cli_names.get(key) or "--" + key.replace("_", "-")
    return (
        f"required setting is missing; give {option} on the command line or set {key} in "
        f"{source or 'a --config file'}"
    )


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

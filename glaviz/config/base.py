"""The base of every command's configuration model, and what the generic layer asks of it.

A command's model is the one definition of its options: the CLI options are generated from its
fields (help text = field description), ``--config`` files are validated against it, and run
records store it. The class variables below tell the generic layer (``glaviz.config.loading``,
``glaviz.runs.records``) which fields name outputs and which are paths, so nothing about a
command is written twice.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

#: Flags that steer what happens to existing outputs: not copied into a run record's ``config``, so
#: a re-run from a record never overwrites by surprise.
BEHAVIOUR_FLAGS: frozenset[str] = frozenset({"overwrite", "skip_existing"})


def is_path_annotation(annotation: Any) -> bool:
    """True for ``Path``, ``Path | None`` and ``list[Path]`` annotations."""
    if annotation is Path:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        return any(is_path_annotation(a) for a in typing.get_args(annotation) if a is not ...)
    return False


class CommandConfig(BaseModel):
    """Options of one command. Unknown keys are errors, so a typo in a config file is caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields naming files or folders the command writes (not inputs; never in a fingerprint).
    OUTPUT_FIELDS: ClassVar[frozenset[str]] = frozenset({"output"})
    #: ``str`` fields that hold either a name (registry model, packaged calibration) or a path; a
    #: path in a config file is taken relative to the file.
    NAME_OR_PATH_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def path_fields(cls) -> list[str]:
        """Fields typed as paths."""
        return [n for n, f in cls.model_fields.items() if is_path_annotation(f.annotation)]

    def input_files(self) -> dict[str, Path]:
        """Input files this run reads, by field name (outputs and weights excluded).

        Name-or-path fields count when they name an existing file (a CAL.json, not ``global``).
        """
        found: dict[str, Path] = {}
        for name in self.path_fields():
            value = getattr(self, name)
            if name not in self.OUTPUT_FIELDS and isinstance(value, Path):
                found[name] = value
        for name in self.NAME_OR_PATH_FIELDS - {"weights"}:
            value = getattr(self, name, None)
            if isinstance(value, str) and Path(value).is_file():
                found[name] = Path(value)
        return found

    def output_files(self) -> list[Path]:
        """The files that exist once the command has finished (empty: it writes nothing)."""
        return [getattr(self, n) for n in sorted(self.OUTPUT_FIELDS) if getattr(self, n, None)]

    def record_path(self) -> Path | None:
        """Where this run's record goes: beside the first output (``OUT.run.json``)."""
        outputs = self.output_files()
        return sidecar_record(outputs[0]) if outputs else None


def sidecar_record(output: Path) -> Path:
    """The run record of a single-file output: ``predictions.h5`` → ``predictions.h5.run.json``."""
    return output.with_name(output.name + ".run.json")


def overwrite_field(what: str = "existing outputs") -> Any:
    """The ``overwrite`` field every writing command has."""
    return Field(False, description=f"Replace {what}.")


def skip_existing_field(what: str = "OUTPUT") -> Any:
    """The ``skip_existing`` field every writing command has (batch re-runs)."""
    return Field(
        False,
        description=f"Exit 0 without work when {what} holds a finished run with the same inputs, "
        "options and weights (exit 3 when they differ, unless --overwrite).",
    )


def parse_feature_list(value: object) -> object:
    """``"optical,dem"`` or a list → a validated tuple of feature groups (None stays None)."""
    from glaviz.published.groups import parse_features

    if value is None:
        return None
    if isinstance(value, str | list | tuple):
        return parse_features(value)  # type: ignore[arg-type]
    return value

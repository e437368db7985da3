"""What each input of ``glaviz change`` is, which rasters it holds, and its date.

An input is an outline GeoTIFF, a deploy output folder, an inventory GeoPackage or a batch
output root. Each becomes one or more :class:`DateSource` (a batch root gives one per date, its
scenes of one date mosaicked later). Dates come from what the run recorded: deploy's or
batch's records beside the outlines, the inventory's ``date`` column, the batch's
``summary.csv``; ``--date INPUT=YYYY-MM-DD`` fills in or overrides them. Every problem is found
here, before any raster is read: an input of unknown kind, a missing date, two inputs of one
date, fewer than two dates.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from glaviz.config.change import ChangeConfig
from glaviz.errors import ConfigError, InputError
from glaviz.inventory.grid import acquisition_date

#: Deploy's file names, as glaviz.engine.outputs.OUTPUT_NAMES has them.
OUTLINES, CONFIDENCE, RECORD = "outlines.tif", "confidence.tif", "run.json"
#: The batch's per-scene record (glaviz.batch.done) and job summary (glaviz.batch.results).
BATCH_RECORD, SUMMARY = "batch.json", "summary.csv"
#: Statuses of a batch scene whose outputs are complete.
DONE_STATUSES = frozenset({"done", "skipped"})
RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class RasterPart:
    """One outline raster (1 ice, 0 no ice, nodata unobserved) and its confidence raster."""

    outlines: Path
    confidence: Path | None = None
    #: Whether the run record says the confidence was calibrated (None: no record).
    calibrated: bool | None = None


@dataclass
class DateSource:
    """Everything one date of the comparison is read from."""

    date: dt.date
    name: str
    rasters: list[RasterPart] = field(default_factory=list)
    inventory: Path | None = None
    #: The outlines an inventory was built from: where it was observed.
    inventory_outlines: Path | None = None

    @property
    def files(self) -> list[Path]:
        """The files read for this date (for the run record)."""
        out = [p.outlines for p in self.rasters] + [
            p.confidence for p in self.rasters if p.confidence
        ]
        if self.inventory is not None:
            out.append(self.inventory)
        return out


class _Dates:
    """The ``--date`` options, matched to inputs by path, file name or batch scene id."""

    def __init__(self, config: ChangeConfig) -> None:
        self.given = config.date_overrides()
        self.used: set[int] = set()

    def lookup(self, path: Path, *names: str) -> dt.date | None:
        for k, (key, date) in enumerate(self.given):
            if key in names or key in (str(path), path.name) or _same_path(key, path):
                self.used.add(k)
                return date
        return None

    def check_all_used(self, inputs: list[Path]) -> None:
        unused = [key for k, (key, _) in enumerate(self.given) if k not in self.used]
        if unused:
            raise ConfigError(
                f"--date names {unused[0]!r}, which is none of the inputs "
                f"({', '.join(str(p) for p in inputs)}); name an input as given, or its file name"
            )


def _same_path(key: str, path: Path) -> bool:
    try:
        return Path(key).resolve() == path.resolve()
    except OSError:
        return False


def resolve_inputs(config: ChangeConfig) -> list[DateSource]:
    """One :class:`DateSource` per date, sorted by date; every refusal raised here."""
    dates = _Dates(config)
    sources: list[DateSource] = []
    for path in config.inputs:
        sources.extend(_sources_of(Path(path), dates))
    dates.check_all_used(list(config.inputs))
    sources.sort(key=lambda s: s.date)
    for a, b in itertools.pairwise(sources):
        if a.date == b.date:
            raise ConfigError(
                f"{a.name} and {b.name} both have the date {a.date}; give one input per date "
                "(scenes of one date in a batch root are mosaicked), or correct one with --date"
            )
    if len(sources) < 2:
        only = sources[0] if sources else None
        raise ConfigError(
            "glaviz change compares two dates at least; "
            + (f"{only.name} gives only {only.date}" if only else "no input gives a date")
            + "; add an input of another date"
        )
    return sources


def _sources_of(path: Path, dates: _Dates) -> list[DateSource]:
    if not path.exists():
        raise InputError(f"input {path} does not exist; check the path")
    if path.is_dir() and (path / SUMMARY).is_file():
        return _batch_root(path, dates)
    if path.is_dir():
        if not (path / OUTLINES).is_file():
            raise InputError(
                f"{path} is a folder without {OUTLINES} or {SUMMARY}; pass a glaviz deploy "
                "output folder, a batch output root, an outline GeoTIFF or an inventory GeoPackage"
            )
        part = deploy_part(path / OUTLINES)
        return [DateSource(_date(path, dates, _recorded_date(path)), str(path), [part])]
    if path.suffix.lower() == ".gpkg":
        return [_inventory(path, dates)]
    if path.suffix.lower() in RASTER_SUFFIXES:
        part = deploy_part(path)
        return [DateSource(_date(path, dates, _recorded_date(path.parent)), str(path), [part])]
    raise InputError(
        f"input {path} is neither a GeoTIFF, a GeoPackage nor a folder; pass outlines.tif, a "
        "deploy output folder, an inventory GeoPackage or a batch output root"
    )


def _date(path: Path, dates: _Dates, recorded: dt.date | None, *names: str) -> dt.date:
    given = dates.lookup(path, *names)
    if given is not None:
        return given
    if recorded is not None:
        return recorded
    label = f"{path} (scene {names[0]})" if names else str(path)
    raise ConfigError(
        f"input {label} has no date (none in its run record, batch record or inventory); "
        f"give one with --date {names[0] if names else path}=YYYY-MM-DD"
    )


def _parse_date(value: object) -> dt.date | None:
    if value in (None, ""):
        return None
    text = str(value)[:10]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _recorded_date(folder: Path) -> dt.date | None:
    """The date deploy's run record or the batch's scene record holds, if any."""
    date = _parse_date(acquisition_date(folder / RECORD))
    if date is not None:
        return date
    record = folder / BATCH_RECORD
    if record.is_file():
        try:
            return _parse_date(json.loads(record.read_text()).get("date"))
        except (OSError, ValueError, AttributeError):
            return None
    return None


def deploy_part(outlines: Path) -> RasterPart:
    """The outlines, with the confidence raster beside them when deploy wrote one."""
    folder = outlines.parent
    confidence = folder / CONFIDENCE
    calibrated = None
    record = folder / RECORD
    if record.is_file():
        try:
            settings = json.loads(record.read_text()).get("settings") or {}
            calibrated = bool(settings.get("calibration"))
        except (OSError, ValueError, AttributeError):
            calibrated = None
    has_conf = outlines.name == OUTLINES and confidence.is_file()
    return RasterPart(outlines, confidence if has_conf else None, calibrated)


def _batch_root(root: Path, dates: _Dates) -> list[DateSource]:
    """One source per date of a batch's finished scenes (from summary.csv)."""
    try:
        with open(root / SUMMARY, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read {root / SUMMARY}: {exc}") from None
    by_date: dict[dt.date, DateSource] = {}
    for row in rows:
        if row.get("status") not in DONE_STATUSES:
            continue
        scene = str(row.get("scene_id", ""))
        outlines = root / scene / OUTLINES
        if not outlines.is_file():
            raise InputError(
                f"batch scene {scene} is listed as done in {root / SUMMARY} but {outlines} is "
                "missing; run the batch again"
            )
        date = _date(root, dates, _parse_date(row.get("date")), scene)
        source = by_date.setdefault(date, DateSource(date, f"{root} ({date})"))
        source.rasters.append(deploy_part(outlines))
    if not by_date:
        raise InputError(f"batch root {root} has no finished scene in {SUMMARY}; run the batch")
    return list(by_date.values())


def _inventory(path: Path, dates: _Dates) -> DateSource:
    """An inventory GeoPackage: its date column (or record), and the outlines it was built from."""
    import pyogrio

    from glaviz.config.base import sidecar_record
    from glaviz.runs.records import read_record

    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises its own DataSourceError types
        raise InputError(f"cannot read inventory {path}: {exc}") from None
    if "glaciers" not in layers:
        raise InputError(
            f"{path} has no layer 'glaciers' (layers: {', '.join(layers) or '-'}); pass the "
            "GeoPackage glaviz inventory wrote"
        )
    record = read_record(sidecar_record(path)) or {}
    recorded = _inventory_date(path) or _parse_date(record.get("date"))
    outlines = None
    source = (record.get("config") or {}).get("source")
    if source:
        candidate = Path(source)
        candidate = candidate / OUTLINES if candidate.is_dir() else candidate
        outlines = candidate if candidate.is_file() else None
    return DateSource(
        _date(path, dates, recorded), str(path), inventory=path, inventory_outlines=outlines
    )


def _inventory_date(path: Path) -> dt.date | None:
    """The most common ``date`` of the inventory's glaciers; two dates in one file are refused."""
    import pyogrio

    info = pyogrio.read_info(path, layer="glaciers")
    if "date" not in list(info["fields"]):
        return None
    frame = pyogrio.read_dataframe(path, layer="glaciers", columns=["date"], read_geometry=False)
    values = {d for d in (_parse_date(v) for v in frame["date"].tolist()) if d is not None}
    if len(values) > 1:
        shown = ", ".join(str(d) for d in sorted(values))
        raise InputError(
            f"inventory {path} holds glaciers of several dates ({shown}); give one inventory "
            "per date"
        )
    return values.pop() if values else None

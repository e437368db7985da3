"""``build_inventory``: from an ice mask to glaciers, one complex at a time.

The data flow reads top to bottom: open and check every input on the working grid; fill noise
holes; label the complexes once (4-connected, as deploy's polygons); then for each complex, on
its bounding box plus the gutter's margin, read the DEM window, split the complex (reference
markers or Kienholz flowsheds), merge pieces below ``--min-area``, and measure every glacier.
Memory is the scene's masks and labels plus the largest complex's crop; the DEM and the
reference are never held whole.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.config.inventory import InventoryConfig
from glaviz.util.progress import Progress

log = logging.getLogger("glaviz.inventory")


@dataclass(frozen=True)
class InventoryResult:
    """What one inventory run wrote and found."""

    output: Path
    record: Path
    glaciers: int
    complexes: int
    vanished: int
    holes_filled: int
    methods: dict[str, int]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    #: Isolated ice patches below --min-area left out (see InventoryConfig.drop_small_patches).
    dropped: int = 0

    def summary(self) -> str:
        """The line ``glaviz inventory`` prints."""
        methods = ", ".join(f"{v} {k}" for k, v in sorted(self.methods.items()))
        return (
            f"{self.glaciers} glaciers from {self.complexes} complexes ({methods}); "
            f"{self.vanished} reference glaciers vanished; "
            + (f"{self.dropped} patches below --min-area dropped; " if self.dropped else "")
            + f"{self.seconds:.1f} s; wrote {self.output}"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz inventory``, less the ``status`` the CLI adds."""
        return {
            "outputs": [str(self.output), str(self.record)],
            "counts": {
                "glaciers": self.glaciers,
                "complexes": self.complexes,
                "vanished": self.vanished,
                "dropped": self.dropped,
            },
            "timings": {"total_s": self.seconds},
        }


@dataclass
class _Collected:
    """Rows of the output layers, gathered complex by complex."""

    glaciers: list[dict[str, Any]] = field(default_factory=list)
    geometries: list[Any] = field(default_factory=list)
    hypsometry: list[tuple[int, float, float, int]] = field(default_factory=list)
    divides: list[tuple[int, int, Any]] = field(default_factory=list)
    seen_refs: set[int] = field(default_factory=set)
    methods: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    dropped_km2: float = 0.0


def build_inventory(config: InventoryConfig, *, progress: bool = False) -> InventoryResult:
    """Split the ice of ``config.source`` into glaciers and write ``config.output``."""
    from scipy import ndimage

    from glaviz.inventory.cleanup import ICE_STRUCTURE, fill_small_holes
    from glaviz.inventory.flowsheds import KienholzParams
    from glaviz.inventory.grid import DemReader, ReferenceInventory, open_outlines
    from glaviz.runs.records import prepare_outputs

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    # The one "output exists" rule; skipping a finished run is the caller's choice (glaviz.api).
    prepare_outputs(config.model_copy(update={"skip_existing": False}))
    scene = open_outlines(config.source)
    dem = DemReader(config.dem, scene.grid)
    try:
        reference = (
            ReferenceInventory(config.reference, scene.grid, config.reference_id)
            if config.uses_reference and config.reference is not None
            else None
        )
        timings["read_s"] = time.perf_counter() - t0
        keep = scene.invalid if scene.outside is None else scene.invalid | scene.outside
        holes = fill_small_holes(scene.ice, max_pixels=config.max_hole_pixels, keep=keep)
        del keep
        labels, n = ndimage.label(scene.ice, structure=ICE_STRUCTURE)
        objects = ndimage.find_objects(labels)
        timings["label_s"] = time.perf_counter() - t0 - timings["read_s"]
        params = KienholzParams.from_config(config)
        collected = _Collected()
        t_loop = time.perf_counter()
        with Progress(
            progress, total=n, description="Splitting complexes", rate_unit="complexes"
        ) as bar:
            for k, box in enumerate(objects, start=1):
                if box is not None:
                    _one_complex(k, box, labels, scene, dem, reference, config, params, collected)
                bar.advance()
        timings["complexes_s"] = time.perf_counter() - t_loop
        del labels
        t_out = time.perf_counter()
        layers, counts = _assemble(scene, reference, config, collected)
        record = _record(config, scene, counts, collected, holes, n, timings, t0)
        from glaviz.inventory.output import record_path, write_inventory

        write_inventory(config.output, layers=layers, record=record)
        timings["write_s"] = time.perf_counter() - t_out
    finally:
        dem.close()
    return InventoryResult(
        output=config.output,
        record=record_path(config.output),
        glaciers=counts["glaciers"],
        complexes=n,
        vanished=counts["vanished"],
        holes_filled=holes,
        methods=dict(collected.methods),
        seconds=time.perf_counter() - t0,
        timings=timings,
        dropped=collected.dropped,
    )


def _one_complex(
    k: int,
    box: tuple[slice, slice],
    labels: np.ndarray,
    scene: Any,
    dem: Any,
    reference: Any,
    config: InventoryConfig,
    params: Any,
    out: _Collected,
) -> None:
    """Split complex ``k`` (bounding box ``box``) into glaciers and collect them into ``out``."""
    from glaviz.inventory.attributes import divide_lines, label_polygons, raster_attributes
    from glaviz.inventory.cleanup import shared_edges

    grid = scene.grid
    xres, yres = grid.xres, grid.yres
    margin = math.ceil(params.margin_m / min(xres, yres)) + 2
    rows = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, grid.height))
    cols = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, grid.width))
    mask = labels[rows, cols] == k
    area_m2 = float(mask.sum()) * grid.pixel_area_m2
    if config.drop_small_patches and area_m2 < config.min_area_km2 * 1e6:
        out.dropped += 1
        out.dropped_km2 += area_m2 / 1e6
        return
    elevation = dem.read(rows, cols)
    markers = reference.rasterize(rows, cols) if reference is not None else None
    local, refs, method = _split(mask, elevation, markers, area_m2, grid, config, params)
    out.methods[method] = out.methods.get(method, 0) + 1
    local, new_refs = _merge_slivers(local, refs, grid, config)
    m = int(local.max())
    edge = _scene_edge(scene, rows, cols)
    transform = grid.window_transform(rows, cols)
    stats = raster_attributes(
        local,
        m,
        dem=elevation,
        xres=xres,
        yres=yres,
        transform=transform,
        invalid=scene.invalid[rows, cols],
        scene_edge=edge,
        band_m=config.band_m,
    )
    polygons = label_polygons(local, transform)
    first = len(out.glaciers) + 1
    for g in range(1, m + 1):
        s = stats[g - 1]
        gid = first + g - 1
        for lo, permille in s.pop("hypsometry"):
            out.hypsometry.append((gid, lo, lo + config.band_m, permille))
        ref = new_refs[g - 1]
        if ref is not None:
            out.seen_refs.add(ref)
        out.glaciers.append({"glaviz_id": gid, "complex_id": k, "method": method, "ref": ref, **s})
        out.geometries.append(polygons[g])
    pairs = sorted(shared_edges(local))
    for a, b, line in divide_lines(polygons, pairs):
        out.divides.append((first + a - 1, first + b - 1, line))


def _split(
    mask: np.ndarray,
    elevation: np.ndarray,
    markers: np.ndarray | None,
    area_m2: float,
    grid: Any,
    config: InventoryConfig,
    params: Any,
) -> tuple[np.ndarray, list[int | None], str]:
    """Labels of the complex's pieces, the reference id of each, and the method that split it."""
    from glaviz.inventory.flowsheds import kienholz_split
    from glaviz.inventory.reference import reference_split

    if markers is not None and (config.method == "reference" or markers[mask].any()):
        local, refs = reference_split(mask, elevation, markers)
        return local, refs, "reference"
    if area_m2 < 2 * params.sliver_area_km2 * 1e6:
        # Too small for two glaciers that are not slivers: the split would merge back to one.
        return mask.astype(np.int32), [None], "single"
    split = kienholz_split(mask, elevation, xres=grid.xres, yres=grid.yres, params=params)
    return split.labels, [None] * int(split.labels.max()), "dem"


def _merge_slivers(
    local: np.ndarray, refs: list[int | None], grid: Any, config: InventoryConfig
) -> tuple[np.ndarray, list[int | None]]:
    """Pieces below --min-area merged into neighbours; the reference ids follow their pieces."""
    from glaviz.inventory.cleanup import merge_slivers, min_area_rule

    protected = [i + 1 for i, r in enumerate(refs) if r is not None]
    local, mapping = merge_slivers(
        local,
        is_sliver=min_area_rule(config.min_area_km2 * 1e6),
        pixel_area=grid.pixel_area_m2,
        pixel_length=math.sqrt(grid.pixel_area_m2),
        protected=protected,
    )
    new_refs: list[int | None] = [None] * int(local.max())
    for old, ref in enumerate(refs, start=1):
        if ref is not None and mapping[old] > 0:
            new_refs[mapping[old] - 1] = ref
    return local, new_refs


def _scene_edge(scene: Any, rows: slice, cols: slice) -> np.ndarray:
    """Pixels of the window on the scene's border or next to what lies outside the scene: a
    glacier touching them may continue beyond what was mapped."""
    from scipy import ndimage

    from glaviz.inventory.cleanup import ICE_STRUCTURE

    grid = scene.grid
    edge = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
    if rows.start == 0:
        edge[0] = True
    if rows.stop == grid.height:
        edge[-1] = True
    if cols.start == 0:
        edge[:, 0] = True
    if cols.stop == grid.width:
        edge[:, -1] = True
    if scene.outside is not None:
        edge |= ndimage.binary_dilation(scene.outside[rows, cols], structure=ICE_STRUCTURE)
    return edge


def _assemble(
    scene: Any, reference: Any, config: InventoryConfig, c: _Collected
) -> tuple[dict[str, Any], dict[str, int]]:
    """The output layers (glaciers, hypsometry, divides, vanished) and their counts."""
    import geopandas as gpd
    import pandas as pd

    crs = scene.grid.crs
    glaciers = _glacier_frame(c, crs)
    if scene.date is not None:
        glaciers["date"] = scene.date
    order = [
        "glaviz_id",
        "area_km2",
        "cenlon",
        "cenlat",
        "zmin_m",
        "zmax_m",
        "zmed_m",
        "zmean_m",
        "slope_deg",
        "aspect_deg",
        "aspect_sec",
        "termlon",
        "termlat",
        "dem_valid_frac",
        "touches_scene_edge",
        "touches_nodata",
        "complex_id",
        "method",
    ] + (["date"] if scene.date is not None else [])
    vanished = None
    if reference is not None:
        id_col = reference.id_field
        skip = (id_col, reference.frame.geometry.name)
        attrs = [col for col in reference.frame.columns if col not in skip]
        refs = [int(r) if _known(r) else None for r in _refs_of(c)]
        glaciers[id_col] = [reference.ids[r - 1] if r else None for r in refs]
        for col in attrs:
            values = reference.frame[col].tolist()
            glaciers[f"ref_{col}"] = [values[r - 1] if r else None for r in refs]
        order = ["glaviz_id", id_col] + order[1:] + [f"ref_{col}" for col in attrs]
        vanished = _vanished(scene, reference, c.seen_refs)
    glaciers = (
        glaciers[[*order, "geometry"]]
        if len(glaciers)
        else glaciers.reindex(columns=[*order, "geometry"])
    )
    hyps = pd.DataFrame(c.hypsometry, columns=["glaviz_id", "band_min_m", "band_max_m", "permille"])
    divides = gpd.GeoDataFrame(
        {
            "glacier_a": [a for a, _, _ in c.divides],
            "glacier_b": [b for _, b, _ in c.divides],
        },
        geometry=[g for _, _, g in c.divides],
        crs=crs,
    )
    divides["length_m"] = divides.geometry.length * _unit(crs)
    layers: dict[str, Any] = {"glaciers": glaciers, "hypsometry": hyps, "divides": divides}
    if vanished is not None:
        layers["vanished"] = vanished
    counts = {
        "glaciers": len(glaciers),
        "divides": len(divides),
        "vanished": 0 if vanished is None else len(vanished),
    }
    return layers, counts


def _glacier_frame(c: _Collected, crs: Any) -> Any:
    """The collected glaciers as a GeoDataFrame, with geodesic areas and lon/lat points."""
    import geopandas as gpd
    import pandas as pd
    from pyproj import Transformer

    from glaviz.inventory.attributes import geodesic_area_km2

    glaciers = gpd.GeoDataFrame(pd.DataFrame(c.glaciers), geometry=c.geometries, crs=crs)
    if not len(glaciers):
        for name in ("area_km2", "cenlon", "cenlat", "termlon", "termlat"):
            glaciers[name] = pd.Series(dtype="float64")
        return glaciers
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    glaciers["area_km2"] = geodesic_area_km2(glaciers.geometry.to_crs("EPSG:4326").values)
    points = glaciers.geometry.representative_point()
    glaciers["cenlon"], glaciers["cenlat"] = to_lonlat.transform(
        points.x.to_numpy(), points.y.to_numpy()
    )
    glaciers["termlon"], glaciers["termlat"] = to_lonlat.transform(
        glaciers["term_x"].to_numpy(), glaciers["term_y"].to_numpy()
    )
    return glaciers


def _refs_of(c: _Collected) -> list[Any]:
    """The reference number of each collected glacier (``None`` for new ones)."""
    return [row["ref"] for row in c.glaciers]


def _known(r: Any) -> bool:
    return r is not None and not (isinstance(r, float) and math.isnan(r))


def _unit(crs: Any) -> float:
    try:
        return float(crs.linear_units_factor[1])
    except Exception:  # CRSError without a linear unit
        return 1.0


def _vanished(scene: Any, reference: Any, seen: set[int]) -> Any:
    """Reference glaciers inside the valid scene that received no ice."""
    from rasterio import features
    from rasterio.windows import from_bounds

    grid = scene.grid
    frame = reference.frame
    keep = []
    for i, geom in enumerate(frame.geometry.values, start=1):
        if i in seen:
            continue
        win = from_bounds(*geom.bounds, transform=grid.transform)
        r0 = max(math.floor(win.row_off), 0)
        c0 = max(math.floor(win.col_off), 0)
        r1 = min(math.ceil(win.row_off + win.height), grid.height)
        c1 = min(math.ceil(win.col_off + win.width), grid.width)
        if r1 <= r0 or c1 <= c0:
            continue  # outside the scene: nothing is known about it
        rows, cols = slice(r0, r1), slice(c0, c1)
        inside = features.rasterize(
            [(geom, 1)],
            out_shape=(r1 - r0, c1 - c0),
            transform=grid.window_transform(rows, cols),
            all_touched=True,
            dtype="uint8",
        ).astype(bool)
        expected = max(geom.area / grid.pixel_area_m2 * _unit(grid.crs) ** 2, 1.0)
        if inside.sum() < 0.5 * expected:
            continue  # mostly beyond the scene's edge
        unknown = scene.invalid[rows, cols]
        if scene.outside is not None:
            unknown = unknown | scene.outside[rows, cols]
        if (inside & ~unknown).sum() >= 0.5 * inside.sum():
            keep.append(i - 1)
    return frame.iloc[keep].reset_index(drop=True)


def _record(
    config: InventoryConfig,
    scene: Any,
    counts: dict[str, int],
    c: _Collected,
    holes: int,
    complexes: int,
    timings: dict[str, float],
    t0: float,
) -> dict[str, Any]:
    from glaviz.runs.records import run_record

    grid = scene.grid
    return {
        **run_record(config, command="inventory"),
        "grid": {
            "crs": str(grid.crs),
            "width": grid.width,
            "height": grid.height,
            "pixel_m": [grid.xres, grid.yres],
        },
        "date": scene.date,
        "complexes": complexes,
        "methods": c.methods,
        "holes_filled": holes,
        "dropped_patches": {"count": c.dropped, "area_km2": c.dropped_km2},
        **counts,
        "timings": {**timings, "total_s": time.perf_counter() - t0},
    }

"""``glaviz inventory``: split glacier complexes into glaciers with RGI-style attributes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, state


@app.command("inventory")
def inventory(
    source: Annotated[
        Path,
        typer.Argument(
            help="Deploy output folder (its outlines.tif) or an outline GeoTIFF (1 = ice).",
            metavar="OUTDIR|OUTLINES.tif",
        ),
    ],
    dem: Annotated[Path, typer.Option(help="DEM GeoTIFF in metres.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="GeoPackage to write.")],
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference inventory (GeoPackage, shapefile, GeoJSON), e.g. RGI."),
    ] = None,
    reference_id: Annotated[
        str | None,
        typer.Option(help="Reference column with the glacier ids (default: rgi_id, RGIId, …)."),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="reference (copy divides), dem (Kienholz et al. 2013 flowsheds) or auto "
            "(reference when one is given)."
        ),
    ] = "auto",
    min_area: Annotated[
        float,
        typer.Option(help="Pieces smaller than this (km²) join their longest-boundary neighbour."),
    ] = 0.01,
    max_hole_pixels: Annotated[
        int, typer.Option(help="Fill holes of at most this many pixels (larger: nunataks).")
    ] = 4,
    band: Annotated[float, typer.Option(help="Hypsometry band height in metres.")] = 50.0,
    gutter_distance: Annotated[
        float, typer.Option(help="Gutter's distance from the outline in metres (dem method).")
    ] = 40.0,
    gutter_width: Annotated[float, typer.Option(help="Gutter width in metres.")] = 40.0,
    gutter_depth: Annotated[float, typer.Option(help="How far the gutter is lowered (m).")] = 100.0,
    radius_a: Annotated[float, typer.Option(help="Merge radius factor a (r = a·N^b, m).")] = 14.3,
    radius_b: Annotated[float, typer.Option(help="Merge radius exponent b.")] = 0.5,
    radius_max: Annotated[float, typer.Option(help="Largest merge radius in metres.")] = 3500.0,
    radius_cell: Annotated[
        float, typer.Option(help="Cell size (m) in which the accumulation N is counted.")
    ] = 40.0,
    sliver_area: Annotated[
        float, typer.Option(help="Flowsheds below this (km²) are slivers (dem method).")
    ] = 0.1,
    sliver_compact_area: Annotated[
        float, typer.Option(help="Flowsheds below this (km²) are slivers when elongated.")
    ] = 0.2,
    sliver_compactness: Annotated[
        float, typer.Option(help="Elongated: 2·sqrt(π·area)/perimeter below this.")
    ] = 0.5,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Split glacier complexes into glaciers along ice divides, with RGI-style attributes.

    Divides are copied from a reference inventory (marker watershed on the DEM) or found from
    the DEM alone (Kienholz et al. 2013). Writes the layers glaciers, hypsometry, divides and
    vanished, and a run record beside the GeoPackage.

    Example: glaviz inventory out/ --dem dem.tif --reference rgi.gpkg --reference-id rgi_id
    -o glaciers.gpkg
    """
    from pydantic import ValidationError

    from glaviz.config.inventory import InventoryConfig
    from glaviz.errors import ConfigError
    from glaviz.inventory import build_inventory

    try:
        config = InventoryConfig(
            source=source,
            dem=dem,
            output=output,
            reference=reference,
            reference_id=reference_id,
            method=method,  # type: ignore[arg-type]
            min_area_km2=min_area,
            max_hole_pixels=max_hole_pixels,
            band_m=band,
            gutter_distance_m=gutter_distance,
            gutter_width_m=gutter_width,
            gutter_depth_m=gutter_depth,
            radius_a=radius_a,
            radius_b=radius_b,
            radius_max_m=radius_max,
            radius_cell_m=radius_cell,
            sliver_area_km2=sliver_area,
            sliver_compact_area_km2=sliver_compact_area,
            sliver_compactness=sliver_compactness,
            overwrite=overwrite,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    result = build_inventory(config, progress=state.show_progress)
    if not state.quiet:
        methods = ", ".join(f"{v} {k}" for k, v in sorted(result.methods.items()))
        console.print(
            f"{result.glaciers} glaciers from {result.complexes} complexes ({methods}); "
            f"{result.vanished} reference glaciers vanished; {result.seconds:.1f} s; "
            f"wrote {result.output}",
            markup=False,
            highlight=False,
        )

"""``glaviz features``: compile input rasters (or a published feature file) into one stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, state


@app.command("features")
def features(
    output: Annotated[Path, typer.Option("--output", "-o", help="Stack GeoTIFF to write.")],
    optical: Annotated[
        Path | None, typer.Option(help="Optical raster: 6 TOA reflectance bands.")
    ] = None,
    elevation: Annotated[Path | None, typer.Option(help="DEM, 1 band, metres.")] = None,
    slope: Annotated[
        Path | None, typer.Option(help="Slope in degrees; computed from the DEM if absent.")
    ] = None,
    co_pol_sar: Annotated[Path | None, typer.Option(help="Co-pol sigma0, 2 bands, linear.")] = None,
    cross_pol_sar: Annotated[
        Path | None, typer.Option(help="Cross-pol sigma0, 2 bands, linear.")
    ] = None,
    in_sar: Annotated[Path | None, typer.Option(help="InSAR coherence, 2 bands.")] = None,
    thermal: Annotated[Path | None, typer.Option(help="Thermal band, 1 band, K.")] = None,
    from_published: Annotated[
        Path | None,
        typer.Option(
            "--from-published",
            help="Convert a published AREA_features.pickle (compile_features.py output) instead "
            "of raster inputs; read with an allow-list unpickler.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Compile a float32 feature stack on the optical grid, warping and checking every input.

    --optical and --elevation are required unless --from-published names a published file.

    Example: glaviz features -o stack.tif --optical s2.tif --elevation dem.tif

    Example: glaviz features --from-published swiss_alps_features-004.pickle -o stack.tif
    """
    from pydantic import ValidationError

    from glaviz.config import FeaturesConfig
    from glaviz.errors import ConfigError
    from glaviz.features import run_features

    try:
        config = FeaturesConfig(
            output=output,
            from_published=from_published,
            optical=optical,
            elevation=elevation,
            slope=slope,
            co_pol_sar=co_pol_sar,
            cross_pol_sar=cross_pol_sar,
            in_sar=in_sar,
            thermal=thermal,
            overwrite=overwrite,
        )
    except ValidationError as exc:
        messages = (e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError("; ".join(messages)) from None
    result = run_features(config, progress=state.show_progress)
    if not state.quiet:
        console.print(
            f"Wrote {result.path}: {result.width} × {result.height} px, {len(result.bands)} bands "
            f"({', '.join(result.groups)}), {result.crs}, {result.seconds:.1f} s",
            markup=False,
            highlight=False,
        )

"""A finished deploy as one ``xarray.Dataset``, for notebooks.

``open_result(outdir)`` reads the GeoTIFFs of ``glaviz deploy`` through rioxarray, so the dataset
carries their CRS and transform (``ds.rio.crs``, ``ds.rio.transform()``) and every xarray tool
(selection by coordinates, plotting, reprojection with ``ds.rio.reproject``) works on it. The run
record becomes the dataset's attributes. Arrays are lazy (dask-free, read on access) unless
``chunks`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from glaviz.errors import InputError
from glaviz.runs.outputs import RECORD_NAME
from glaviz.runs.records import read_record

if TYPE_CHECKING:
    import xarray as xr

#: Output file → variable name, in the order they appear in the dataset.
VARIABLES = {
    "outlines.tif": "outlines",
    "confidence.tif": "confidence",
    "probabilities.tif": "probabilities",
}


def open_result(outdir: str | Path, *, chunks: Any = None) -> xr.Dataset:
    """Open a deploy output folder: ``outlines`` (uint8, 255 = nodata), ``confidence`` and, when
    written, ``probabilities`` (one band per class, dimension ``class``).

    ``attrs`` hold the run record (``run.json``) of the folder. Values stay as written: use
    ``ds.outlines.where(ds.outlines != 255)`` to mask nodata.
    """
    import rioxarray
    import xarray as xr

    folder = Path(outdir)
    if not (folder / "outlines.tif").is_file():
        raise InputError(
            f"{folder} holds no outlines.tif; give a folder written by glaviz deploy "
            "(it may still be running, or have failed)"
        )
    variables: dict[str, xr.DataArray] = {}
    for name, var in VARIABLES.items():
        path = folder / name
        if not path.is_file():
            continue
        array = rioxarray.open_rasterio(path, chunks=chunks, mask_and_scale=False)
        assert isinstance(array, xr.DataArray)
        if var == "probabilities":
            array = array.rename(band="class").assign_coords({"class": range(array.sizes["band"])})
        else:
            array = array.squeeze("band", drop=True)
        array.attrs.pop("long_name", None)
        variables[var] = array
    dataset = xr.Dataset(variables)
    dataset.attrs.update(read_record(folder / RECORD_NAME) or {})
    crs = variables["outlines"].rio.crs
    if crs is not None:
        dataset = dataset.rio.write_crs(crs)
    return dataset

"""The ``glaviz`` command line: thin Typer commands over the engine modules.

Nothing here imports TensorFlow, rasterio or h5py at module level, so ``glaviz --help`` is instant.
"""

"""What the published GlaViTU pipeline fixes, in one place each.

Everything a published checkpoint or the published benchmark depends on lives here, so reproducing
the published numbers means reading one package: the feature groups and their band counts
(:mod:`.groups`), the min/max normalisation (:mod:`.normalisation`), how a glaviz stack names its
bands (:mod:`.stack_layout`), the location input (:mod:`.location`) and the benchmark HDF5 layout
(:mod:`.benchmark`). Numpy only at import time.
"""

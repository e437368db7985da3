"""The deploy engine: tiled, streaming inference over whole scenes.

The pure parts (window grid and padding in :mod:`.tiling`, Gaussian blending into a rolling
buffer in :mod:`.blend`, confidence and outline smoothing in :mod:`.postprocess`) are numpy-only
and property-tested; reading, the model and writing build on them.
"""

"""Infrastructure shared by every room: progress bars, the TensorFlow import, raster helpers.

Nothing here knows about glaciers or GlaViTU; each module serves several packages.
"""

"""GlaViTU in Keras 3: layers, model assembly, checkpoint import and bundles."""

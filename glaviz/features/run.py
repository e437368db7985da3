"""The engine of ``glaviz features``: one configuration in, one stack out."""

from __future__ import annotations

from glaviz.config.features import FeaturesConfig
from glaviz.features.stack import StackResult, compile_stack


def run_features(config: FeaturesConfig, *, progress: bool = False) -> StackResult:
    """Compile the stack from raster inputs, or convert a published feature file."""
    if config.from_published is not None:
        from glaviz.features.published import convert_published

        return convert_published(
            source=config.from_published,
            output=config.output,
            overwrite=config.overwrite,
            progress=progress,
        )
    return compile_stack(
        output=config.output,
        acquisition_date=config.date,
        overwrite=config.overwrite,
        progress=progress,
        **config.inputs(),
    )

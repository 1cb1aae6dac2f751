"""Runner components: loops (and hooks) for stitched backbones."""
from .stitch_sweep import StitchSweepTestLoop, write_stitch_report

__all__ = ['StitchSweepTestLoop', 'write_stitch_report']
from .hooks import StitchingInitHook, StitchSamplingHook  # noqa: E402

__all__ += ['StitchingInitHook', 'StitchSamplingHook']

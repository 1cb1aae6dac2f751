"""Runner components for stitched backbones, registered in mmengine's root
registries: the training hooks and the stitch-sweep test loop; and the
global random streams (:mod:`.rng`)."""
from . import optimizers  # noqa: F401  (registers the constructors)
from .hooks import RNGStateHook, StitchingInitHook, StitchSamplingHook
from .stitch_sweep import (StitchSweepTestLoop, StitchSweepValLoop,
                           write_stitch_report)

__all__ = [
    'RNGStateHook', 'StitchingInitHook', 'StitchSamplingHook',
    'StitchSweepTestLoop', 'StitchSweepValLoop', 'write_stitch_report'
]

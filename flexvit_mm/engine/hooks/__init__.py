from .stitch_sampling_hook import StitchSamplingHook
from .stitching_init_hook import StitchingInitHook

__all__ = ['StitchSamplingHook', 'StitchingInitHook']

from .rng_state_hook import RNGStateHook
from .stitch_sampling_hook import (StitchSamplingHook, shared_stitch_table,
                                   task_input_shape)
from .stitching_init_hook import StitchingInitHook

__all__ = [
    'RNGStateHook', 'StitchSamplingHook', 'StitchingInitHook',
    'shared_stitch_table', 'task_input_shape'
]

from .least_squares import NormalEquations
from .stitching_layer import StitchingLayer

__all__ = ['NormalEquations', 'StitchingLayer']
from .sampler import FlopsGroupedSampler, group_by_flops  # noqa: E402

__all__ += ['group_by_flops', 'FlopsGroupedSampler']
from .selection import (find_stitched_backbone, parse_stitch_ids,  # noqa: E402
                        set_stitch)

__all__ += ['find_stitched_backbone', 'set_stitch', 'parse_stitch_ids']

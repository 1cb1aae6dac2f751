"""The pieces of SN-Netv2 stitching, one concept per module: the stitching
space (pure Python), the stitching layer, the least-squares solver, the
FLOPs-grouped sampler, runtime stitch selection and checkpoint conversion."""
from .convert import IncompatibleCheckpointError, convert_official_snnetv2
from .least_squares import NormalEquations
from .sampler import FlopsGroupedSampler, group_by_flops
from .selection import find_stitched_backbone, parse_stitch_ids, set_stitch
from .space import Route, Segment, StitchingSpace
from .stitching_layer import StitchingLayer

__all__ = [
    'StitchingSpace', 'Route', 'Segment', 'StitchingLayer',
    'NormalEquations', 'FlopsGroupedSampler', 'group_by_flops',
    'find_stitched_backbone', 'set_stitch', 'parse_stitch_ids',
    'convert_official_snnetv2', 'IncompatibleCheckpointError'
]

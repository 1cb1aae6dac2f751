"""Model analysis tools: FLOPs counting with attention for stitch tables."""
from .complexity import (SDPA_OP, count_flops, count_flops_per_setting,
                         explicit_attention, sdpa_flop_jit)

__all__ = [
    'SDPA_OP', 'sdpa_flop_jit', 'count_flops', 'count_flops_per_setting',
    'explicit_attention'
]

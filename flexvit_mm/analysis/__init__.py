"""Model analysis: FLOPs counting with attention, per-stitch tables."""
from .complexity import (SDPA_OP, count_flops, count_flops_per_setting,
                         explicit_attention, sdpa_flop_jit)
from .stitch_table import (compute_stitch_table, load_or_compute_stitch_table,
                           stitch_table_key)

__all__ = [
    'SDPA_OP', 'sdpa_flop_jit', 'count_flops', 'count_flops_per_setting',
    'explicit_attention', 'compute_stitch_table',
    'load_or_compute_stitch_table', 'stitch_table_key'
]

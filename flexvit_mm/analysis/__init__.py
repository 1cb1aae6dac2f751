"""Model analysis: FLOPs counting with attention, per-stitch tables and the
choice of a stitch under a budget."""
from .budget import (BudgetError, Selection, load_stitch_results,
                     load_stitch_table, parse_flops_budget,
                     parse_latency_budget, select_stitch,
                     select_stitch_for_model)
from .complexity import (SDPA_OP, count_flops, count_flops_per_setting,
                         explicit_attention, sdpa_flop_jit)
from .stitch_table import (compute_stitch_table, latency_protocol,
                           load_or_compute_stitch_table,
                           measure_stitch_latency, stitch_table_key)

__all__ = [
    'SDPA_OP', 'sdpa_flop_jit', 'count_flops', 'count_flops_per_setting',
    'explicit_attention', 'compute_stitch_table',
    'load_or_compute_stitch_table', 'stitch_table_key', 'latency_protocol',
    'measure_stitch_latency', 'BudgetError', 'Selection',
    'parse_flops_budget', 'parse_latency_budget', 'select_stitch',
    'select_stitch_for_model', 'load_stitch_results', 'load_stitch_table'
]

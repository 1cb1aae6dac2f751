"""GFLOPs, parameters and latency of every stitch of a config's model.

    python tools/analysis/get_flops.py CONFIG [--shape H W]
        [--latency | --no-latency] [--batch-size 1] [--device cpu]
        [--threads N] [--warmup N] [--repeats N] [--stitch-ids all|3,12,80]
        [--out-dir DIR] [--cfg-options K=V ...]

Prints the per-stitch table (id, kind, route, GFLOPs, params, median
latency) and writes OUT_DIR/stitch_table.{json,csv}. The FLOPs are those of
compute_stitch_table, the table the training sampler and tools/test.py use.
A config without a stitched backbone gets one row for its backbone.
"""
import flexvit_mm  # noqa: F401  (registers modules, applies compat fixes)
from flexvit_mm.cli import run
from flexvit_mm.cli.get_flops import main

if __name__ == '__main__':
    run(main)

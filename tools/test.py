"""Evaluate a checkpoint with an mmseg, mmdet or mmpretrain config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH]
        [--fuse] [--show-dir DIR] [--tta] [--cfg-options K=V ...]
        [--launcher {none,pytorch,slurm,mpi}]
    stitched backbones:
        [--stitch-id N | 3,12,80 | 2-12 | all] [--flops-shape H W]
        [--flops-budget 40G | --latency-budget 25ms]
        [--stitches-json PATH] [--latency-table PATH]
"""
import flexvit_mm  # noqa: F401  (registers modules, applies compat fixes)
from flexvit_mm.cli import run
from flexvit_mm.cli.test import main

if __name__ == '__main__':
    run(main)

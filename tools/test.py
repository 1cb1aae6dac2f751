"""Evaluate a checkpoint with an mmseg, mmdet or mmpretrain config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH]
        [--fuse] [--show-dir DIR] [--tta] [--cfg-options K=V ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import flexvit_mm  # noqa: F401  (registers modules, applies compat fixes)
from flexvit_mm.cli import run
from flexvit_mm.cli.test import main

if __name__ == '__main__':
    run(main)

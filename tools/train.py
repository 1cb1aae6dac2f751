"""Train a model from an mmseg, mmdet or mmpretrain config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--no-validate] [--cfg-options K=V ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import flexvit_mm  # noqa: F401  (registers modules, applies compat fixes)
from flexvit_mm.cli import run
from flexvit_mm.cli.train import main

if __name__ == '__main__':
    run(main)

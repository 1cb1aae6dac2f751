"""Export one stitch of an SN-Netv2 model as a standalone model.

    python tools/deploy/export_stitch.py CONFIG CKPT --stitch-id N --out DIR
        [--onnx] [--shape H W] [--force] [--cfg-options K=V ...]

See docs/deploy.md.
"""
import flexvit_mm  # noqa: F401  (registers modules, applies compat fixes)
from flexvit_mm.cli import run
from flexvit_mm.cli.export_stitch import main

if __name__ == '__main__':
    run(main)

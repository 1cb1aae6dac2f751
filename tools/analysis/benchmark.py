"""Inference throughput (images/s), medians of interleaved runs.

    python tools/analysis/benchmark.py CONFIG [--fuse] [--device cuda]
    python tools/analysis/benchmark.py --backbone shvit_s4 --fuse
    python tools/analysis/benchmark.py --compare-shvit s1,s2,s3,s4 \
        --official-repo ~/src/SHViT --out shvit_speed.json

Defaults follow the official SHViT harness: CPU batch 16, 1 thread, float32;
GPU batch 256 with float16 AMP; 224x224 inputs (SHViT-S4 256x256).
--compare-shvit times ours, timm's and the official model (fused, identical
weights) round-robin in one process and reports ours/official and ours/timm.
"""
from flexvit_mm.cli import run
from flexvit_mm.cli.benchmark import main

if __name__ == '__main__':
    run(main)

"""Generate a small learnable dataset in a real dataset's exact layout.

    python tools/dataset_tools/make_synthetic.py --kind ade20k --out data/ade
    python tools/dataset_tools/make_synthetic.py --kind nyu --num-train 50
"""
from flexvit_mm.cli import run
from flexvit_mm.cli.make_synthetic import main

if __name__ == '__main__':
    run(main)

"""``make demo`` / ``tools/demo.py``: generate a mini ImageNet, train a tiny
stitched ViT pair on it with ``tools/train.py``, evaluate every stitch with
``tools/test.py --stitch-id all`` (table, JSON/CSV, Pareto plot) and print
the accuracy range next to the chance level."""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = 'configs/demo/snnetv2_tiny_600i_synthetic-imagenet.py'
DEMO_DATA = 'data/demo/imagenet'
DEMO_CLASSES = 10
DEMO_SIZES = dict(num_train=60, num_val=10, img_size=(48, 48),
                  num_classes=DEMO_CLASSES, seed=0)
_COMPLETE = '.flexvit-mm-complete'


def ensure_demo_data(out=DEMO_DATA):
    """Generate the demo dataset once; later runs reuse it.

    It is written to a temporary folder and moved into place when complete,
    so an interrupted run never leaves a half-written dataset behind.
    """
    from ..datasets.synthetic import make_imagenet
    if osp.isfile(osp.join(out, _COMPLETE)):
        print(f'Reusing the demo dataset in {out}')
        return out
    if osp.exists(out):
        raise RuntimeError(
            f'{out} exists but was not completed by the demo; remove it to '
            'let the demo generate it again.')
    staging = out + '.partial'
    shutil.rmtree(staging, ignore_errors=True)
    make_imagenet(staging, **DEMO_SIZES)
    open(osp.join(staging, _COMPLETE), 'w').close()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    os.rename(staging, out)
    return out


def _run(args):
    print('$ ' + ' '.join(args), flush=True)
    subprocess.run([sys.executable] + args, cwd=REPO, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/demo/<timestamp>')
    args = parser.parse_args(argv)
    os.chdir(REPO)
    start = time.time()
    ensure_demo_data()
    # A new folder per run: the demo never reuses or overwrites a run.
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'demo', time.strftime('%Y%m%d_%H%M%S'))
    _run(['tools/train.py', DEMO_CONFIG, '--work-dir', work_dir])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    test_dir = osp.join(work_dir, 'test')
    _run(['tools/test.py', DEMO_CONFIG, checkpoint, '--work-dir', test_dir,
          '--stitch-id', 'all'])
    with open(osp.join(test_dir, 'stitches.json')) as f:
        rows = json.load(f)
    top1 = [row['accuracy/top1'] for row in rows]
    best = max(rows, key=lambda row: row['accuracy/top1'])
    print('\n' + '=' * 64)
    print(f'flexvit-mm demo finished in {time.time() - start:.0f} s')
    print(f'  checkpoint : {checkpoint}')
    print(f'  stitches   : {len(rows)}, '
          f"{min(r['gflops'] for r in rows) * 1e3:.1f}-"
          f"{max(r['gflops'] for r in rows) * 1e3:.1f} MFLOPs")
    print(f'  top-1      : {min(top1):.1f}-{max(top1):.1f} % '
          f'(chance: {100 / DEMO_CLASSES:.1f} %); best: stitch '
          f"{best['id']} {best['route']}")
    print(f"  table      : {osp.join(test_dir, 'stitches.csv')}")
    print(f"  plot       : {osp.join(test_dir, 'stitches_pareto.png')}")
    print('=' * 64)
    return rows

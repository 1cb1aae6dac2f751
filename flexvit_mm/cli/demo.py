"""``make demo`` / ``tools/demo.py``: generate a mini ADE20K, train on it
with ``tools/train.py``, evaluate with ``tools/test.py`` and print the
metrics next to the chance level."""
import argparse
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = 'configs/demo/fcn_r18-tiny_400i_synthetic-ade20k.py'
DEMO_DATA = 'data/demo/ade'
DEMO_SIZES = dict(num_train=200, num_val=40, img_size=(96, 96), seed=0)
_COMPLETE = '.flexvit-mm-complete'


def ensure_demo_data(out=DEMO_DATA):
    """Generate the demo dataset once; later runs reuse it.

    It is written to a temporary folder and moved into place when complete,
    so an interrupted run never leaves a half-written dataset behind.
    """
    from ..datasets.synthetic import make_ade20k
    root = osp.join(out, 'ADEChallengeData2016')
    if osp.isfile(osp.join(root, _COMPLETE)):
        print(f'Reusing the demo dataset in {root}')
        return root
    if osp.exists(root):
        raise RuntimeError(
            f'{root} exists but was not completed by the demo; remove it to '
            'let the demo generate it again.')
    staging = out + '.partial'
    shutil.rmtree(staging, ignore_errors=True)
    make_ade20k(staging, **DEMO_SIZES)
    open(osp.join(staging, 'ADEChallengeData2016', _COMPLETE), 'w').close()
    os.makedirs(out, exist_ok=True)
    os.rename(osp.join(staging, 'ADEChallengeData2016'), root)
    shutil.rmtree(staging)
    return root


def majority_class_accuracy(root):
    """Pixel accuracy of always predicting the most frequent class: the
    chance level the demo's aAcc is compared with."""
    import cv2
    counts = np.zeros(256)
    for path in glob.glob(osp.join(root, 'annotations', 'validation',
                                   '*.png')):
        counts += np.bincount(cv2.imread(path, 0).ravel(), minlength=256)
    valid = counts[1:151]
    return 100 * valid.max() / valid.sum()


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
    root = ensure_demo_data()
    # A new folder per run: the demo never reuses or overwrites a run.
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'demo', time.strftime('%Y%m%d_%H%M%S'))
    _run(['tools/train.py', DEMO_CONFIG, '--work-dir', work_dir])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    test_dir = osp.join(work_dir, 'test')
    _run(['tools/test.py', DEMO_CONFIG, checkpoint, '--work-dir', test_dir])
    logs = sorted(glob.glob(osp.join(test_dir, '*', '[0-9]*_[0-9]*.json')))
    with open(logs[-1]) as f:
        metrics = json.loads(f.read().strip().splitlines()[-1])
    chance = majority_class_accuracy(root)
    print('\n' + '=' * 60)
    print(f'flexvit-mm demo finished in {time.time() - start:.0f} s')
    print(f'  checkpoint : {checkpoint}')
    print(f"  mIoU       : {metrics['mIoU']:.2f}")
    print(f"  mAcc       : {metrics['mAcc']:.2f}")
    print(f"  aAcc       : {metrics['aAcc']:.2f}   (chance, always the "
          f'majority class: {chance:.2f})')
    print('=' * 60)
    return metrics

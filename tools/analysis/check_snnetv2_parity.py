"""Check that converted official SN-Netv2 checkpoints give the official
logits, for every stitch id.

Needs a local checkout of ziplab/SN-Netv2 (never part of this repository):

    python tools/analysis/check_snnetv2_parity.py --official-repo ~/src/SN-Netv2
    python tools/analysis/check_snnetv2_parity.py --official-repo ~/src/SN-Netv2 \
        --pairs s-l --rank 64 --full-size

It builds the official classification SNNetv2 (``classification/snnet.py``
and ``models_v2.py`` of the checkout) with random weights, random LayerScale
and non-zero LoRA B, saves it in the official format, converts it with
``tools/model_converters/snnetv2_to_flexvit.py``'s function, and compares
the logits of both models in float32 for every stitch id (relative error:
max |ours - official| / max |official|). Without ``--full-size`` the anchors
keep their depths (12/24 or 12/12) but are narrow, which is much faster on
a CPU and exercises the same routes.
"""
import argparse
import os.path as osp
import sys
import tempfile

import torch

import flexvit_mm  # noqa: F401
from flexvit_mm.analysis.official_snnetv2 import (build_official_snnetv2,
                                                  load_official_snnetv2)
from flexvit_mm.checkpoint import load_checkpoint_file
from flexvit_mm.models import SNNetv2
from flexvit_mm.models.stitching.convert import convert_official_snnetv2

# name, timm name, full (width, depth, heads), narrow (width, depth, heads)
ANCHORS = {
    's': ('deit3_small_patch16_224', (384, 12, 6), (32, 12, 2)),
    'b': ('deit3_base_patch16_224', (768, 12, 12), (48, 12, 3)),
    'l': ('deit3_large_patch16_224', (1024, 24, 16), (64, 24, 4)),
}


def build_ours(pair, full, img_size, rank, num_classes):
    anchors = []
    for key in pair:
        name, full_dims, narrow_dims = ANCHORS[key]
        width, depth, heads = full_dims if full else narrow_dims
        anchors.append(dict(model_name=name, img_size=img_size,
                            embed_dim=width, depth=depth, num_heads=heads))
    return SNNetv2(anchors, lora_rank=rank, num_classes=num_classes)


def check_pair(repo, pair, rank, full, img_size, batch, tolerance):
    num_classes = 10
    dims = [ANCHORS[key][1 if full else 2] for key in pair]
    official = build_official_snnetv2(load_official_snnetv2(repo), dims,
                                      img_size, rank, num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, f'snnetv2_deit3_{pair[0]}_{pair[1]}.pth')
        official.train()  # the official code merges LoRA in eval mode
        torch.save({'model': official.state_dict()}, path)
        saved = load_checkpoint_file(path)['model']
    ours = build_ours(pair, full, img_size, rank, num_classes)
    ours.load_state_dict(convert_official_snnetv2(saved, ours), strict=True)
    official.eval()
    ours.eval()
    images = torch.randn(batch, 3, img_size, img_size,
                         generator=torch.Generator().manual_seed(1))
    official_ids = sorted(official.all_cfgs)
    assert official_ids == list(ours.stitch_ids), 'stitch ids differ'
    worst = (0.0, None)
    with torch.no_grad():
        for stitch_id in official_ids:
            official.reset_stitch_id(stitch_id)
            ours.set_stitch(stitch_id)
            expected = official(images)
            actual = ours(images)[0]
            error = ((actual - expected).abs().max() /
                     expected.abs().max()).item()
            worst = max(worst, (error, stitch_id))
    ok = worst[0] <= tolerance
    print(f'{pair[0].upper()}-{pair[1].upper()} rank {rank}: '
          f'{len(official_ids)} stitches, worst relative error '
          f'{worst[0]:.2e} (id {worst[1]}) -> '
          f'{"OK" if ok else "FAILED"} (tolerance {tolerance:g})')
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True,
                        help='local checkout of ziplab/SN-Netv2')
    parser.add_argument('--pairs', nargs='+', default=['s-l', 's-b'],
                        choices=['s-l', 's-b', 'b-l'])
    parser.add_argument('--rank', type=int, default=64,
                        help='LoRA rank of the stitching layers')
    parser.add_argument('--full-size', action='store_true',
                        help='real anchor widths (slow on CPU)')
    parser.add_argument('--img-size', type=int, default=None,
                        help='default: 224 with --full-size, else 32')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--tolerance', type=float, default=1e-4)
    args = parser.parse_args()
    if not osp.isfile(osp.join(args.official_repo, 'classification',
                               'snnet.py')):
        parser.error(f'{args.official_repo!r} is not a SN-Netv2 checkout '
                     '(no classification/snnet.py).')
    img_size = args.img_size or (224 if args.full_size else 32)
    results = [
        check_pair(args.official_repo, pair.split('-'), args.rank,
                   args.full_size, img_size, args.batch, args.tolerance)
        for pair in args.pairs
    ]
    sys.exit(0 if all(results) else 1)


if __name__ == '__main__':
    main()

"""Check that converted official SHViT checkpoints give the official logits,
unfused and fused.

Needs a local checkout of ysj9909/SHViT (never part of this repository):

    python tools/analysis/check_shvit_parity.py --official-repo ~/src/SHViT
    python tools/analysis/check_shvit_parity.py --official-repo ~/src/SHViT \
        --archs s4 --size 256 --batch 4

For each variant it builds the official ``model/shvit.py`` SHViT with random
weights and random BN/GroupNorm statistics and affine, saves it as the
release checkpoints are saved (``{'model': state_dict}``), converts that
with the converter tool's function, and compares the logits in float32
(relative error: max |ours - official| / max |official|): unfused against
unfused, then ours fused (``switch_to_deploy``) against the official fused
model (the official ``utils.replace_batchnorm``).
"""
import argparse
import os.path as osp
import sys
import tempfile

import torch

import flexvit_mm  # noqa: F401
from flexvit_mm.analysis.benchmark import (BenchmarkError,
                                           build_official_shvit,
                                           load_official_shvit,
                                           randomise_norms)
from flexvit_mm.cli.convert_shvit import convert_file
from flexvit_mm.models import SHViT
from flexvit_mm.models.heads import SHViTClsHead


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True,
                        help='a checkout of github.com/ysj9909/SHViT')
    parser.add_argument('--archs', nargs='+', default=sorted(SHViT.arch_zoo),
                        choices=sorted(SHViT.arch_zoo))
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--tolerance', type=float, default=1e-5)
    args = parser.parse_args()
    try:
        module, replace_batchnorm = load_official_shvit(args.official_repo)
    except BenchmarkError as error:
        sys.exit(f'error: {error}')
    torch.set_grad_enabled(False)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for seed, arch in enumerate(args.archs):
            torch.manual_seed(seed)
            official = build_official_shvit(module, arch).eval()
            randomise_norms(official, seed)
            src = osp.join(tmp, f'shvit_{arch}.pth')
            torch.save(dict(model=official.state_dict()), src)
            state = convert_file(src, osp.join(tmp, f'ours_{arch}.pth'), arch)
            backbone = SHViT(arch).eval()
            head = SHViTClsHead(
                1000, backbone.arch_settings['embed_dims'][-1]).eval()
            backbone.load_state_dict({
                k[len('backbone.'):]: v
                for k, v in state.items() if k.startswith('backbone.')
            }, strict=True)
            head.load_state_dict({
                k[len('head.'):]: v
                for k, v in state.items() if k.startswith('head.')
            }, strict=True)

            x = torch.randn(args.batch, 3, args.size, args.size)
            ref = official(x)
            unfused = rel_err(head(backbone(x)), ref)
            replace_batchnorm(official)
            backbone.switch_to_deploy()
            head.switch_to_deploy()
            ref_fused = official(x)
            ours_fused = head(backbone(x))
            fused = rel_err(ours_fused, ref_fused)
            fused_vs_unfused = rel_err(ours_fused, ref)
            ok = max(unfused, fused, fused_vs_unfused) < args.tolerance
            failed |= not ok
            print(f'SHViT-{arch.upper()} @{args.size}: unfused {unfused:.2e}'
                  f'  fused {fused:.2e}  (ours fused vs official unfused '
                  f'{fused_vs_unfused:.2e})  {"ok" if ok else "FAIL"}')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()

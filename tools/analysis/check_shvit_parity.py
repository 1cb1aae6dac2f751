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
model (its own ``fuse()`` methods, as ``replace_batchnorm`` does).
"""
import argparse
import importlib.util
import os.path as osp
import sys
import tempfile

import torch
import torch.nn as nn

import flexvit_mm  # noqa: F401
from flexvit_mm.cli.convert_shvit import convert_file
from flexvit_mm.models import SHViT
from flexvit_mm.models.heads import SHViTClsHead


def official_module(repo):
    path = osp.join(repo, 'model', 'shvit.py')
    if not osp.isfile(path):
        sys.exit(f'error: {path} not found; --official-repo must be a '
                 'checkout of ysj9909/SHViT')
    spec = importlib.util.spec_from_file_location('official_shvit', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_official(module, arch):
    cfg = SHViT.arch_zoo[arch]
    return module.SHViT(
        embed_dim=cfg['embed_dims'], depth=cfg['depths'],
        partial_dim=cfg['partial_dims'], types=cfg['types'],
        qk_dim=[cfg['qk_dim']] * 3, num_classes=1000)


@torch.no_grad()
def randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            n = m.weight.numel()
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def fuse_official(net):
    """The official ``replace_batchnorm``: children with ``fuse()`` are
    replaced by their fused module, recursively."""
    for name, child in net.named_children():
        if hasattr(child, 'fuse'):
            fused = child.fuse()
            setattr(net, name, fused)
            fuse_official(fused)
        elif isinstance(child, nn.BatchNorm2d):
            setattr(net, name, nn.Identity())
        else:
            fuse_official(child)


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
    module = official_module(args.official_repo)
    torch.set_grad_enabled(False)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for seed, arch in enumerate(args.archs):
            torch.manual_seed(seed)
            official = build_official(module, arch).eval()
            randomise(official, seed)
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
            fuse_official(official)
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

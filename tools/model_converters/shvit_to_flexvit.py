"""Convert an official SHViT checkpoint (ysj9909/SHViT releases
``shvit_s{1..4}.pth``) or a timm ``shvit_s*`` state dict for flexvit-mm.

    python tools/model_converters/shvit_to_flexvit.py shvit_s4.pth \
        checkpoints/shvit-s4_in1k.pth --arch s4
    python tools/model_converters/shvit_to_flexvit.py shvit_s4.pth \
        checkpoints/shvit-s4_dense.pth --arch s4 --dense

Without --dense the output holds "backbone." and "head." keys (mmpretrain
ImageClassifier with SHViTClsHead; use it with load_from). With --dense it
holds the backbone only, for `init_cfg=dict(type='Pretrained',
checkpoint=OUT)` of an SHViT backbone in mmdet/mmseg. A checkpoint of
another variant is refused, naming both.

A checkpoint is read as data (docs/checkpoints.md): one that holds more
than weights and training state is refused unless you trust it and pass
--trust-checkpoint. The output holds only weights.
"""
from flexvit_mm.cli import run
from flexvit_mm.cli.convert_shvit import main

if __name__ == '__main__':
    run(main)

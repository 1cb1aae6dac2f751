"""Convert an official SN-Netv2 checkpoint for a flexvit-mm config: the
classification models (snnetv2_deit3_{s_b,s_l,b_l}.pth) or the ADE20K /
COCO-Stuff-10K SETR-naive segmentation models (mmseg MAE-layout anchors with
relative position bias; the heads are kept).

    python tools/model_converters/snnetv2_to_flexvit.py \
        configs/cls/snnetv2_deit3-s-l_in1k.py snnetv2_deit3_s_l.pth \
        checkpoints/snnetv2_deit3-s-l_in1k.pth
    python tools/model_converters/snnetv2_to_flexvit.py \
        configs/seg/snnetv2_ade20k.py OFFICIAL_ADE20K.pth \
        checkpoints/snnetv2_deit3-s-l_ade20k.pth

The output loads with `load_from`, `tools/test.py CONFIG OUT` or an
`init_cfg=dict(type='Pretrained', checkpoint=OUT)`. A checkpoint of other
anchors, another LoRA rank or other classes is refused with what
differs. A checkpoint is read as data (docs/checkpoints.md): official
training checkpoints that hold more than weights (e.g. their
argparse.Namespace) are refused unless you trust the file and pass
--trust-checkpoint. The output holds only weights.
"""
from flexvit_mm.cli import run
from flexvit_mm.cli.convert_snnetv2 import main

if __name__ == '__main__':
    run(main)

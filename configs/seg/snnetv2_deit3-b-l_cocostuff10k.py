"""SN-Netv2: DeiT3-B stitched with DeiT3-L, SETR-naive, COCO-Stuff-10K.

configs/seg/snnetv2_cocostuff10k.py with the B-L pair of the official B-L model:
DeiT-III B (768 wide, 12 blocks) and L, LoRA rank 4. The official B-L
config names an unregistered ``SNNetPlus`` type with an ``adapt_tune``
argument nothing accepts (and, for COCO-Stuff, no data preprocessor); this
one builds.
"""
_base_ = ['./snnetv2_cocostuff10k.py']

model = dict(
    backbone=dict(
        anchors=[{{_base_.seg_anchors.base}}, {{_base_.seg_anchors.large}}],
        lora_rank=4))

# The tiny ADE20K SN-Netv2 config, recording each rank's trained stitches
# and final weights (tests/helpers/stitch_record.py) for the 2-process test.
_base_ = ['./seg_snnetv2_ade20k_tiny.py']
custom_imports = dict(
    imports=['flexvit_mm', 'tests.helpers.stitch_record'],
    allow_failed_imports=False)
custom_hooks = [
    dict(type='StitchingInitHook', num_images=4),
    dict(type='StitchSamplingHook', gap=0.001, input_shape=(64, 64)),
    dict(type='RecordTrainStitchHook'),
]
train_cfg = dict(max_iters=6, val_interval=6)
train_dataloader = dict(batch_size=1)

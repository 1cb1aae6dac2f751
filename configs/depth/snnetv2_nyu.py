"""SN-Netv2: DeiT3-S stitched with DeiT3-L, DPT depth head, NYUv2 (MMSeg).

The paper recipe (reference: ziplab/SN-Netv2 depth_estimation/, config
configs/snnet/snnetv2_dpt_deit3_s_l_nyu.py on the Monocular-Depth-Estimation-
Toolbox, mmcv 1.x) with the closest MMSeg 1.x equivalents:

- anchors: DeiT-III S and L (ImageNet-21k pretrain) from
  pretrained/deit_3_{small,large}_224_21k.pth, img_size 224 with the
  position embeddings resampled to every input, no drop-path;
- stitching layers: LoRA rank 16, least-squares initialised on 10 training
  crops (StitchingInitHook); every stitch (SL, LS, LSL, SLS) trained,
  FLOPs-grouped sampling with a 10 GFLOP gap counted at 416x544;
- dense outputs: large blocks 4, 11, 17, 23 (small 2, 5, 8, 11), with cls
  tokens; DPT head (channels 256, post-process [96, 192, 384, 768],
  readout 'project', no norm), depth relu(x) + 1e-3, clamped to [1e-3, 10] m
  at test time (``DPTDepthHead``);
- 24 epochs, batch 8 x 2 = 16 (the BTS split's 24,231 images: 1,515
  iterations per epoch), AdamW lr 2e-5, weight decay 0.01 (see below for
  what the exemptions do), gradient clipping at 35;
  one-cycle learning rate per iteration (30 % up from lr/25 with a cosine,
  then down to lr/2500) and one-cycle Adam beta1 (0.95 -> 0.85 -> 0.95);
- training augmentation: NYU valid-region crop, rotation +-2.5 deg (p 0.5),
  horizontal flip, random 416x544 crop, colour augmentation (gamma, brightness,
  per-channel colour; p 0.5); mean/std 127.5;
- test: whole 480x640 frames averaged with their flipped prediction; NYU
  (Eigen) crop, depths in (1e-3, 10) m, metrics per image then averaged;
  validation every epoch, checkpoints every epoch (two kept) plus the best
  RMSE. ``tools/test.py CONFIG CKPT --stitch-id all`` evaluates every
  stitch.

Differences from the official code:

- loss: mmseg's ``SiLogLoss``, per image sqrt(mean(d^2) - 0.5 mean(d)^2)
  with d = log(gt) - log(pred) over pixels with depth, averaged over the
  batch. The official ``SigLoss`` pools the batch, uses
  sqrt(var(d) + 0.15 mean(d)^2) (i.e. a 0.85 instead of 0.5 variance
  weight), log(x + 1e-3), and for its first 100 calls only the mean term.
- beta1 schedule: mmengine has no one-cycle momentum scheduler, so it is two
  ``CosineAnnealingMomentum`` phases (0 -> 30 % and 30 % -> 100 % of the
  iterations), the formula of mmcv's ``OneCycleMomentumUpdaterHook`` up to
  one iteration at the phase change. The optimizer starts at beta1 0.95
  because that hook overwrote the configured (0.9, 0.999) with it too.
- the ``custom_keys`` are the official ones and act as they did there,
  which is less than they say: (1) a one-cycle schedule with a single
  ``max_lr`` / ``eta_max`` (mmcv's hook and mmengine's ``OneCycleLR``
  alike) sets every parameter group to the same learning rate, so the
  backbone ``lr_mult`` 0.1 is inert and the backbone trains at the full
  2e-5; (2) a parameter takes only its longest matching key (mmcv and
  mmengine alike), so the backbone's norms match ``'backbone'`` before
  ``'norm'`` and keep weight decay 0.01 (the head has no norms): only the
  position embeddings and cls tokens are exempt from weight decay.
- the colour augmentation (``DepthColorAug``) reproduces the official one,
  including its gamma on raw 0-255 values (``normalized_gamma=False``).
- the flip test runs in the depth estimator (``test_cfg.flip``), not as a
  test-time-augmentation pipeline; same average.
"""
_base_ = [
    '../_base_/models/snnetv2_dpt_depth.py',
    '../_base_/datasets/nyu_416x544.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

# ------------------------------------------------------------- schedule
max_epochs = 24
max_lr = 1e-4 / 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=max_lr, betas=(0.95, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
            'backbone': dict(lr_mult=0.1),
        }),
    clip_grad=dict(max_norm=35, norm_type=2))
momentum_peak = 0.3 * max_epochs  # where the one-cycle lr peaks
param_scheduler = [
    dict(
        type='OneCycleLR',
        eta_max=max_lr,
        pct_start=0.3,
        anneal_strategy='cos',
        div_factor=25,
        final_div_factor=100,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingMomentum',
        eta_min=0.85,
        by_epoch=True,
        begin=0,
        end=momentum_peak,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingMomentum',
        eta_min=0.95,
        by_epoch=True,
        begin=momentum_peak,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
# The two anchors and the middle of the FLOPs range, each one's metrics
# logged; the plain names (``rmse`` for save_best) hold their mean.
val_cfg = dict(type='StitchSweepValLoop', stitch_ids='anchors+middle')
test_cfg = dict(type='TestLoop')
# The batch the recipe was tuned for: 8 GPUs x 2 images.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# ---------------------------------------------------------------- runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=True,
        interval=1,
        max_keep_ckpts=2,
        save_best='rmse',
        rule='less'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=True)
custom_hooks = [
    dict(type='StitchingInitHook', num_images=10),
    dict(type='StitchSamplingHook', gap=10.0, input_shape=(416, 544)),
]
# Each iteration trains one stitch: DDP must tolerate unused parameters.
find_unused_parameters = True

# configs/cls/shvit-s4_in1k.py shrunk for CPU tests (see
# _base_/tiny_shvit_cls.py); everything else is the real recipe. The tests
# make the same config for S1-S3 by swapping the first base.
_base_ = ['../../configs/cls/shvit-s4_in1k.py', './_base_/tiny_shvit_cls.py']
model = {{_base_.tiny_model}}
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline={{_base_.tiny_train_pipeline}}))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline={{_base_.tiny_test_pipeline}}))
test_dataloader = val_dataloader
train_cfg = {{_base_.tiny_train_cfg}}
param_scheduler = []
auto_scale_lr = dict(enable=False)
custom_hooks = {{_base_.tiny_custom_hooks}}
default_hooks = {{_base_.tiny_default_hooks}}
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

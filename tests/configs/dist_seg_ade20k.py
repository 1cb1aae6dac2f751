# seg_ade20k.py plus a hook that saves each rank's final weights, so a test
# can compare the ranks of a distributed run.
_base_ = ['./seg_ade20k.py']
custom_imports = dict(
    imports=['flexvit_mm', 'tests.helpers.rank_weights'],
    allow_failed_imports=False)
custom_hooks = [dict(type='SaveRankWeightsHook')]

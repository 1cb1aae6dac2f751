"""Bad input ends with a clear message that names the fix, exit status 2,
and leaves the user's files as they were."""
import os
import os.path as osp

import pytest
import torch

from .conftest import CONFIGS, data_root_options, folder_digest, run_tool


def _error(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    return proc.stderr


def test_missing_config_suggests_the_close_one():
    proc = run_tool('tools/train.py', osp.join(CONFIGS, 'seg_ade2k.py'),
                    expect_ok=False)
    message = _error(proc)
    assert 'seg_ade2k.py' in message and 'does not exist' in message
    assert 'seg_ade20k.py' in message


def test_test_tool_missing_config_and_checkpoint(tmp_path):
    proc = run_tool('tools/test.py', osp.join(CONFIGS, 'seg_ade20k.py'),
                    str(tmp_path / 'nope.pth'), expect_ok=False)
    message = _error(proc)
    assert 'nope.pth' in message and 'does not exist' in message


def test_wrong_dataset_layout_says_what_was_expected_where(
        synthetic, tmp_path):
    # A common mistake: pointing at data/ade instead of
    # data/ade/ADEChallengeData2016.
    parent = osp.dirname(synthetic('ade20k'))
    proc = run_tool('tools/train.py', osp.join(CONFIGS, 'seg_ade20k.py'),
                    '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                    *data_root_options(parent), expect_ok=False)
    message = _error(proc)
    assert osp.join(parent, 'images/training') in message
    assert 'ADEChallengeData2016/' in message  # the expected tree
    assert 'make_synthetic.py --kind ade20k' in message
    assert not osp.exists(tmp_path / 'w' / 'last_checkpoint')


def test_resume_from_missing_file(synthetic, tmp_path):
    missing = str(tmp_path / 'iter_999.pth')
    proc = run_tool('tools/train.py', osp.join(CONFIGS, 'cls_imagenet.py'),
                    '--work-dir', str(tmp_path / 'w'), '--resume', missing,
                    '--cfg-options', *data_root_options(
                        synthetic('imagenet')), expect_ok=False)
    message = _error(proc)
    assert missing in message and 'does not exist' in message
    assert '--resume without a path' in message




def test_finished_run_is_not_overwritten(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'cls_imagenet.py')
    work_dir = str(tmp_path / 'w')
    options = data_root_options(synthetic('imagenet'))
    run_tool('tools/train.py', config, '--work-dir', work_dir,
             '--no-validate', '--cfg-options', *options)
    before = folder_digest(work_dir)
    proc = run_tool('tools/train.py', config, '--work-dir', work_dir,
                    '--no-validate', '--cfg-options', *options,
                    expect_ok=False)
    message = _error(proc)
    assert 'already holds a training run' in message
    assert 'iter_4.pth' in message and '--resume' in message
    assert folder_digest(work_dir) == before


def test_amp_on_cpu_and_auto_scale_lr_without_base(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'cls_imagenet.py')
    options = data_root_options(synthetic('imagenet'))
    proc = run_tool('tools/train.py', config, '--work-dir',
                    str(tmp_path / 'a'), '--amp', '--cfg-options', *options,
                    expect_ok=False)
    assert 'accelerator' in _error(proc)
    proc = run_tool('tools/train.py', config, '--work-dir',
                    str(tmp_path / 'b'), '--auto-scale-lr', '--cfg-options',
                    'auto_scale_lr=None', *options, expect_ok=False)
    assert 'base_batch_size' in _error(proc)


def test_make_synthetic_refuses_a_folder_with_files(tmp_path):
    (tmp_path / 'keep.txt').write_text('mine')
    proc = run_tool('tools/dataset_tools/make_synthetic.py', '--kind',
                    'imagenet', '--out', str(tmp_path), expect_ok=False)
    assert '--force' in _error(proc)
    assert os.listdir(tmp_path) == ['keep.txt']


def test_missing_anchor_weights_named_with_where_to_get_them(
        synthetic, tmp_path):
    """Anchor weights named in init_cfg are read when training starts; a
    missing file stops training with its path and source. tools/test.py
    with a trained checkpoint does not need them."""
    config = osp.join(CONFIGS, 'seg_snnetv2_ade20k_tiny.py')
    options = data_root_options(synthetic('ade20k'))
    missing = str(tmp_path / 'pretrained' / 'deit_3_large_224_21k.pth')
    anchor = ['model.backbone.anchors.1.init_cfg.type=Pretrained',
              f'model.backbone.anchors.1.init_cfg.checkpoint={missing}']
    proc = run_tool('tools/train.py', config, '--work-dir',
                    str(tmp_path / 'work'), '--cfg-options', *options,
                    *anchor, expect_ok=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert missing in proc.stderr
    assert 'facebookresearch/deit' in proc.stderr
    # A trained checkpoint holds every weight: testing never reads them.
    trained = str(tmp_path / 'trained')
    run_tool('tools/train.py', config, '--work-dir', trained,
             '--no-validate', '--cfg-options', *options,
             'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1')
    run_tool('tools/test.py', config, osp.join(trained, 'iter_1.pth'),
             '--work-dir', str(tmp_path / 'test'), '--cfg-options',
             *options, *anchor)


def test_input_size_other_than_the_bias_tables_grid_is_explained():
    from flexvit_mm.models.backbones.snnetv2 import SNNetv2
    backbone = SNNetv2([
        dict(model_name='deit3_small_patch16_224', img_size=64,
             patch_size=16, embed_dim=16, depth=2, num_heads=2,
             rel_pos_bias=True),
        dict(model_name='deit3_base_patch16_224', img_size=64,
             patch_size=16, embed_dim=16, depth=4, num_heads=2,
             rel_pos_bias=True),
    ], out_indices=(3, )).eval()
    assert backbone(torch.zeros(1, 3, 64, 64))[0].shape == (1, 16, 4, 4)
    with pytest.raises(ValueError, match=r'4x4 token grid \(64x64 inputs\)'
                       r', but this input gives 6x6.*slide'):
        backbone(torch.zeros(1, 3, 96, 96))


def test_flops_shape_the_model_cannot_take_is_a_user_error():
    from flexvit_mm.cli.common import UserInputError
    from flexvit_mm.cli.test import check_flops_shape
    from flexvit_mm.models import SNNetv2
    anchors = [dict(model_name='deit3_small_patch16_224', img_size=32,
                    embed_dim=16, depth=2, num_heads=2),
               dict(model_name='deit3_base_patch16_224', img_size=32,
                    embed_dim=24, depth=4, num_heads=2)]
    backbone = SNNetv2(anchors, num_classes=3)
    check_flops_shape(backbone, (32, 32))
    with pytest.raises(UserInputError, match='takes 32x32 inputs only'):
        check_flops_shape(backbone, (64, 64))
    dense = SNNetv2(anchors, out_indices=(1, 3))
    check_flops_shape(dense, (64, 48))
    with pytest.raises(UserInputError, match='not a multiple of'):
        check_flops_shape(dense, (60, 64))

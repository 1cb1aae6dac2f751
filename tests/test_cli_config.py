"""How the tools turn their command line into a config (in-process)."""
import os.path as osp

import pytest

from flexvit_mm.cli import UserInputError
from flexvit_mm.cli import test as test_cli
from flexvit_mm.cli import train as train_cli

from .conftest import CONFIGS

SEG = osp.join(CONFIGS, 'seg_ade20k.py')
DET = osp.join(CONFIGS, 'det_mask-rcnn_coco.py')
CLS = osp.join(CONFIGS, 'cls_imagenet.py')


def _train_cfg(*argv):
    return train_cli.build_train_config(train_cli.parse_args(list(argv)))


def test_work_dir_priority(tmp_path):
    assert _train_cfg(SEG).work_dir == './work_dirs/seg_ade20k'
    assert _train_cfg(SEG, '--cfg-options',
                      f'work_dir={tmp_path}/x').work_dir == f'{tmp_path}/x'
    assert _train_cfg(SEG, '--work-dir', f'{tmp_path}/y', '--cfg-options',
                      f'work_dir={tmp_path}/x').work_dir == f'{tmp_path}/y'


def test_no_validate_and_cfg_options(tmp_path):
    cfg = _train_cfg(SEG, '--work-dir', str(tmp_path), '--no-validate',
                     '--cfg-options', 'train_cfg.max_iters=7',
                     'val_dataloader.batch_size=3')
    assert cfg.train_cfg.max_iters == 7
    assert cfg.val_cfg is None and cfg.val_dataloader is None
    assert cfg.val_evaluator is None


def test_auto_scale_lr_enables_the_config_setting(tmp_path):
    cfg = _train_cfg(DET, '--work-dir', str(tmp_path), '--auto-scale-lr',
                     '--cfg-options', 'auto_scale_lr.base_batch_size=8')
    assert cfg.auto_scale_lr.enable is True
    assert cfg.auto_scale_lr.base_batch_size == 8


def test_resume_modes(tmp_path):
    cfg = _train_cfg(CLS, '--work-dir', str(tmp_path), '--resume')
    assert cfg.resume is True and cfg.load_from is None
    checkpoint = tmp_path / 'ckpt.pth'
    checkpoint.write_bytes(b'')
    cfg = _train_cfg(CLS, '--work-dir', str(tmp_path / 'w'), '--resume',
                     str(checkpoint))
    assert cfg.resume is True and cfg.load_from == str(checkpoint)
    cfg = _train_cfg(CLS, '--work-dir', str(tmp_path / 'new'))
    assert not cfg.get('resume')


def test_launcher_and_local_rank(tmp_path, monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    # What torch.distributed.launch sets besides --local-rank.
    for name, value in (('RANK', '3'), ('WORLD_SIZE', '4'),
                        ('MASTER_ADDR', '127.0.0.1'), ('MASTER_PORT', '29500')):
        monkeypatch.setenv(name, value)
    args = train_cli.parse_args(
        [SEG, '--launcher', 'pytorch', '--local-rank', '3'])
    import os
    assert os.environ['LOCAL_RANK'] == '3'
    assert train_cli.build_train_config(args).launcher == 'pytorch'
    args = train_cli.parse_args([SEG, '--local_rank', '1'])
    assert args.local_rank == 1


def test_config_without_toolbox_scope(tmp_path):
    path = tmp_path / 'bare.py'
    path.write_text('model = dict(type="X")\n')
    with pytest.raises(UserInputError, match='default_scope'):
        _train_cfg(str(path))


@pytest.mark.parametrize('config,out,ok', [
    (SEG, 'preds', True),
    (SEG, 'preds.pkl', False),
    (DET, 'preds.pkl', True),
    (DET, 'preds', False),
    (CLS, 'preds.pkl', True),
])
def test_out_rules_per_toolbox(config, out, ok, tmp_path):
    checkpoint = tmp_path / 'c.pth'
    checkpoint.write_bytes(b'')
    args = test_cli.parse_args(
        [config, str(checkpoint), '--out', str(tmp_path / out)])
    if ok:
        cfg, _ = test_cli.build_test_config(args)
        assert cfg.load_from == str(checkpoint)
    else:
        with pytest.raises(UserInputError, match='--out'):
            test_cli.build_test_config(args)


@pytest.mark.parametrize('config,model_type', [
    (SEG, 'SegTTAModel'),
    (DET, 'DetTTAModel'),
    (CLS, 'mmpretrain.AverageClsScoreTTA'),
])
def test_tta_wraps_the_model(config, model_type, tmp_path):
    checkpoint = tmp_path / 'c.pth'
    checkpoint.write_bytes(b'')
    cfg, _ = test_cli.build_test_config(
        test_cli.parse_args([config, str(checkpoint), '--tta']))
    assert cfg.model.type == model_type
    assert 'module' in cfg.model
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert any(t['type'] == 'TestTimeAug' for t in pipeline)

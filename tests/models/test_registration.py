"""``import ghm_mmdet`` makes mmdet's registry build our losses, whatever the import order, and mmdet's
published GHM checkpoints load into models built with them."""
import os.path as osp
import subprocess
import sys

import mmdet
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ghm_mmdet.models.losses import GHMC, GHMR

# mmdet's own GHM recipe, as packaged with mmdet 3.3.0.
MMDET_GHM_CONFIG = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'ghm',
                            'retinanet_r50_fpn_ghm-1x_coco.py')


@pytest.mark.parametrize('first', ['import mmdet.models', 'import mmdet.models.losses', 'pass'])
def test_registry_builds_ours_whatever_the_import_order(first):
    code = (f'{first}\nimport ghm_mmdet\nfrom mmdet.registry import MODELS\n'
            'print(*(MODELS.get(name).__module__ for name in ("GHMC", "GHMR", "MMDetGHMC", "MMDetGHMR")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.splitlines()[-1].split() == (['ghm_mmdet.models.losses.ghm_loss'] * 2
                                                      + ['mmdet.models.losses.ghm_loss'] * 2)


def build_model(config, **loss_overrides):
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # no pretrained download
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    return MODELS.build(cfg.model)


def test_mmdet_ghm_config_with_custom_imports_builds_ours():
    cfg = Config.fromfile(MMDET_GHM_CONFIG)
    cfg.custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    assert type(model.bbox_head.loss_cls) is GHMC and type(model.bbox_head.loss_bbox) is GHMR
    assert model.bbox_head.loss_cls.bins == 30 and model.bbox_head.loss_cls.momentum == 0.75


SAVE_BUILTIN = r'''
import sys, torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmdet.registry import MODELS
import mmdet.models
cfg = Config.fromfile(sys.argv[1])
cfg.model.backbone.init_cfg = None
init_default_scope('mmdet')
model = MODELS.build(cfg.model)
assert type(model.bbox_head.loss_cls).__module__ == 'mmdet.models.losses.ghm_loss'
# Give the moving averages real values, as in a published checkpoint.
model.bbox_head.loss_cls(torch.randn(50, 80), torch.randint(0, 81, (50,)), torch.ones(50))
model.bbox_head.loss_bbox(torch.randn(50, 4), torch.randn(50, 4), torch.ones(50, 4))
torch.save(model.state_dict(), sys.argv[2])
'''


def test_checkpoint_of_mmdet_builtin_ghm_loads_with_no_missing_or_unexpected_keys(tmp_path):
    path = tmp_path / 'builtin.pth'
    subprocess.run([sys.executable, '-c', SAVE_BUILTIN, MMDET_GHM_CONFIG, str(path)], check=True,
                   capture_output=True)
    state = torch.load(path, weights_only=True)
    assert 'bbox_head.loss_cls.acc_sum' in state and 'bbox_head.loss_bbox.edges' in state
    model = build_model(MMDET_GHM_CONFIG)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.bbox_head.loss_cls.acc_sum, state['bbox_head.loss_cls.acc_sum'])
    assert model.bbox_head.loss_cls.acc_sum.sum() > 0


def test_registering_prints_nothing_but_says_what_it_did_at_debug_level():
    run = subprocess.run([sys.executable, '-c', 'import ghm_mmdet'], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == '' and 'ghm_mmdet' not in run.stderr, (run.stdout, run.stderr)
    debug = ('import logging\nfrom mmengine.logging import MMLogger\nlogger = MMLogger.get_current_instance()\n'
             'logger.setLevel(logging.DEBUG)\nfor handler in logger.handlers: handler.setLevel(logging.DEBUG)\n'
             'import ghm_mmdet')
    run = subprocess.run([sys.executable, '-c', debug], capture_output=True, text=True, timeout=120)
    assert "mmdet's built-ins stay available as MMDetGHMC/MMDetGHMR" in run.stdout + run.stderr

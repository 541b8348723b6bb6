"""The COCO configs in configs/ resolve to mmdet 3.3's published GHM recipes and build ghm_mmdet's losses."""
from pathlib import Path

import pytest
from mmengine import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
# Ours -> mmdet's config of the same model (configs/ghm in mmdet 3.3, published box AP 37.0-41.4).
PUBLISHED = {
    'retinanet_ghm_r50_fpn_1x_coco.py': 'mmdet::ghm/retinanet_r50_fpn_ghm-1x_coco.py',
    'retinanet_ghm_r101_fpn_1x_coco.py': 'mmdet::ghm/retinanet_r101_fpn_ghm-1x_coco.py',
    'retinanet_ghm_x101-32x4d_fpn_1x_coco.py': 'mmdet::ghm/retinanet_x101-32x4d_fpn_ghm-1x_coco.py',
    'retinanet_ghm_x101-64x4d_fpn_1x_coco.py': 'mmdet::ghm/retinanet_x101-64x4d_fpn_ghm-1x_coco.py',
}
GHMC_CFG = dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
GHMR_CFG = dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)


def _without_scope(value):
    """``value`` without the ``_scope_`` keys mmengine adds to dicts inherited across packages: ours
    inherit through ``mmdet::`` and get ``_scope_='mmdet'``, mmdet's own files do not."""
    if isinstance(value, dict):
        return {k: _without_scope(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_scope(v) for v in value)
    return value


def _differences(ours, theirs, path='cfg'):
    """Every key path at which two nested dicts/lists differ, as readable lines."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        lines = []
        for key in sorted(set(ours) | set(theirs), key=str):
            if key not in theirs:
                lines.append(f'{path}.{key}: only in ours ({ours[key]!r})')
            elif key not in ours:
                lines.append(f'{path}.{key}: only in mmdet ({theirs[key]!r})')
            else:
                lines.extend(_differences(ours[key], theirs[key], f'{path}.{key}'))
        return lines
    if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)) and len(ours) == len(theirs):
        return [line for i, (a, b) in enumerate(zip(ours, theirs))
                for line in _differences(a, b, f'{path}[{i}]')]
    if type(ours) is not type(theirs) or ours != theirs:
        return [f'{path}: ours {ours!r} != mmdet {theirs!r}']
    return []


def test_differences_names_each_differing_path():
    ours = dict(model=dict(loss=dict(type='GHMC', bins=30)), steps=[1, 2], only_ours=1)
    theirs = dict(model=dict(loss=dict(type='GHMC', bins=10)), steps=[1, 3])
    assert _differences(ours, theirs) == [
        'cfg.model.loss.bins: ours 30 != mmdet 10',
        'cfg.only_ours: only in ours (1)',
        'cfg.steps[1]: ours 2 != mmdet 3',
    ]
    assert _differences(ours, ours) == []


@pytest.mark.parametrize('ours, published', sorted(PUBLISHED.items()))
def test_config_resolves_to_published_recipe(ours, published):
    our_cfg = Config.fromfile(CONFIG_DIR / ours).to_dict()
    assert our_cfg.pop('custom_imports') == dict(imports=['ghm_mmdet'], allow_failed_imports=False)
    differences = _differences(_without_scope(our_cfg), _without_scope(get_config(published).to_dict()))
    assert not differences, f'{ours} differs from {published}:\n' + '\n'.join(differences)


@pytest.mark.parametrize('ours', sorted(PUBLISHED))
def test_config_sets_published_ghm_settings(ours):
    cfg = Config.fromfile(CONFIG_DIR / ours)
    assert _without_scope(cfg.model.bbox_head.loss_cls.to_dict()) == GHMC_CFG
    assert _without_scope(cfg.model.bbox_head.loss_bbox.to_dict()) == GHMR_CFG
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2)


def test_r50_config_builds_ghm_mmdet_losses():
    from mmdet.registry import MODELS

    from ghm_mmdet.models.losses import GHMC, GHMR

    cfg = Config.fromfile(CONFIG_DIR / 'retinanet_ghm_r50_fpn_1x_coco.py')
    cfg.model.backbone.init_cfg = None  # no download of the ImageNet weights
    init_default_scope('mmdet')
    head = MODELS.build(cfg.model).bbox_head
    # Exact types: mmdet's own GHMC/GHMR (same names, same registry) must not be what gets built.
    assert type(head.loss_cls) is GHMC
    assert (head.loss_cls.bins, head.loss_cls.momentum, head.loss_cls.loss_weight) == (30, 0.75, 1.0)
    assert head.loss_cls.use_sigmoid is True
    assert type(head.loss_bbox) is GHMR
    assert (head.loss_bbox.mu, head.loss_bbox.bins, head.loss_bbox.momentum,
            head.loss_bbox.loss_weight) == (0.02, 10, 0.7, 10.0)


def test_r50_config_inherits_mmdets_retinanet_config_directly():
    text = (CONFIG_DIR / 'retinanet_ghm_r50_fpn_1x_coco.py').read_text()
    assert "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'" in text
    assert "custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)" in text


@pytest.mark.parametrize('ours', sorted(set(PUBLISHED) - {'retinanet_ghm_r50_fpn_1x_coco.py'}))
def test_deeper_configs_inherit_the_r50_ghm_config_and_change_only_the_backbone(ours):
    """As mmdet's own configs/ghm: no repeated loss block, so the GHM settings live in one file."""
    text = (CONFIG_DIR / ours).read_text()
    assert "_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'" in text
    assert 'GHMC' not in text and 'GHMR' not in text and 'clip_grad' not in text
    own = Config.fromstring(text.replace("_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'", ''), '.py')
    assert set(own.keys()) == {'model'} and set(own.model.keys()) == {'backbone'}

"""GHM in mmdet's siblings through ``type='mmdet.GHMC'``/``'mmdet.GHMR'``: each shipped config of configs/mmyolo
and configs/mmrotate trains two steps on the CPU (finite losses, finite and non-zero gradients in its head, every
GHM loss called). mmyolo 0.6.0 and mmrotate 1.0.0rc1 install at the oldest tested corner only (tools/setup_env.sh),
so these tests run there."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import ghm_mmdet  # noqa: F401  (registers GHMC/GHMR; the configs' custom_imports do the same)
from ghm_mmdet.models import GHMC, GHMR

pytestmark = [pytest.mark.slow, pytest.mark.compat]

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
SIBLINGS = {path: folder for folder in ('mmyolo', 'mmrotate') for path in sorted((CONFIGS / folder).glob('*.py'))}


def build(path: Path):
    scope = SIBLINGS[path]
    pytest.importorskip(scope, reason=f'{scope} installs at the oldest tested corner (STACK=oldest)')
    register_all_modules = __import__(f'{scope}.utils', fromlist=['register_all_modules']).register_all_modules
    models = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    cfg = Config.fromfile(str(path))
    init_default_scope(scope)
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    model = models.build(cfg.model)
    model.bbox_head.init_weights()  # the prior-probability bias; the backbone's checkpoint is not loaded
    return scope, model


def batch(scope: str, model):
    generator = torch.Generator().manual_seed(1)
    if scope == 'mmyolo':  # the fast data preprocessor's packed boxes: (image, label, x1, y1, x2, y2)
        rows = []
        for image in range(2):
            for _ in range(3):
                x1, y1 = torch.randint(0, 130, (2,), generator=generator).float()
                w, h = torch.randint(20, 120, (2,), generator=generator).float()
                label = float(torch.randint(0, 80, (1,), generator=generator))
                rows.append(torch.tensor([float(image), label, x1, y1, x1 + w, y1 + h]))
        data = dict(inputs=torch.randint(0, 256, (2, 3, 256, 256), generator=generator).float(),
                    data_samples=dict(bboxes_labels=torch.stack(rows)))
    else:  # rotated boxes (cx, cy, w, h, angle)
        from mmrotate.testing import demo_mm_inputs
        torch.manual_seed(1)
        data = demo_mm_inputs(2, [[3, 128, 128], [3, 128, 128]], use_box_type=True, num_classes=15)
    return model.data_preprocessor(data, True)


@pytest.mark.parametrize('path', list(SIBLINGS), ids=lambda path: f'{path.parent.name}/{path.stem}')
def test_the_sibling_config_trains_with_ghm(path):
    scope, model = build(path)
    head = model.bbox_head
    ghm_losses = {name: module for name, module in head.named_children() if isinstance(module, (GHMC, GHMR))}
    assert ghm_losses, f'{path.name} puts no GHM loss into its head'
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(2):
        for module in ghm_losses.values():
            module.last_stats = None
        losses = model(**batch(scope, model), mode='loss')
        total, _ = model.parse_losses(losses)
        optimizer.zero_grad()
        total.backward()
        assert torch.isfinite(total), losses
        assert [name for name, module in ghm_losses.items() if module.last_stats is None] == []
        grads = [param.grad for param in head.parameters() if param.grad is not None]
        assert grads and all(torch.isfinite(grad).all() for grad in grads)
        assert sum(float(grad.abs().sum()) for grad in grads) > 0
        optimizer.step()

"""GHM in the heads users plug it into: each config in configs/ that puts GHM-C/GHM-R into a head, run on
two small images on the CPU at batch 1 and 2 (the matrix and its helpers are in ``head_matrix.py``).

Per entry and batch size: loss mode plus backward gives finite losses and a finite, non-zero gradient in
the head's classification and regression layers; where mmdet's built-in GHMC/GHMR runs, every loss term
and every gradient of the heads equal it on the same batch, and where it cannot run, that is asserted;
the two-stage models predict finite boxes. FSAFHead is refused with an error that says why.
"""
import copy
import functools

import pytest
import torch
from mmdet.models.losses import CrossEntropyLoss
from mmdet.models.losses.ghm_loss import GHMC as MMDetGHMC
from mmdet.models.losses.ghm_loss import GHMR as MMDetGHMR
from mmengine import Config

from ghm_mmdet.core.checks import GHMArgumentError
from ghm_mmdet.models.losses import GHMC, GHMR

from head_matrix import (
    ENTRIES,
    FSAF_BASE,
    GHMC_RECIPE,
    batch,
    build,
    config_path,
    cpu_config,
    entry_config,
    get_path,
    loss_values,
    reference_model_cfg,
    register_builtins,
    run_loss,
    set_path,
)

# About 5 minutes on 2 CPU cores: R-50 models; mmcv's RoIAlign backward dominates the two-stage heads, and DDOD
# runs on 3x larger images.
pytestmark = pytest.mark.slow

BATCH_SIZES = (1, 2)
# Batch 1 runs at the oldest tested corner too.
CELLS = [pytest.param(name, batch_size, id=f'{name}-batch{batch_size}',
                      marks=[pytest.mark.compat] if batch_size == 1 else [])
         for name in ENTRIES for batch_size in BATCH_SIZES]
TWO_STAGE_CELLS = [cell for cell in CELLS if ENTRIES[cell.values[0]].two_stage]
RTOL = 1e-5
OURS = {'GHMC': GHMC, 'GHMR': GHMR}
BUILTIN = {'GHMC': MMDetGHMC, 'GHMR': MMDetGHMR}


def _has_softmax_ghmc(entry) -> bool:
    return any(not loss.get('use_sigmoid', True) for loss in entry.losses.values())


@functools.lru_cache(maxsize=2)
def _model(name: str, variant: str):
    """The entry's model, built once: 'ours' as configured, or 'ours-one-bin'/'reference' for the
    comparison with mmdet (see ``reference_model_cfg``). Returns it with its initial state dict (which
    keeps its ``_metadata``: without it, mmdet's AnchorFreeHead renames 'loss_cls.*' keys to
    'conv_cls.*' on loading)."""
    entry = ENTRIES[name]
    model_cfg = entry_config(entry).model
    if variant != 'ours':
        register_builtins()
        ours, reference = reference_model_cfg(entry, model_cfg)
        model_cfg = ours if variant == 'ours-one-bin' else reference
    model = build(model_cfg)
    return model, copy.deepcopy(model.state_dict())


def _fresh(name: str, variant: str):
    """The cached model back in its initial state (weights, moving averages), with no gradients."""
    model, initial = _model(name, variant)
    model.load_state_dict(initial)
    return model


@functools.lru_cache(maxsize=None)
def _our_run(name: str, batch_size: int):
    """Losses and head gradients of the entry as configured, and the paths of the GHM losses that were called,
    shared by the tests of one cell."""
    entry = ENTRIES[name]
    model = _fresh(name, 'ours')
    for path in entry.losses:
        get_path(model, path).last_stats = None
    losses, grads = run_loss(model, batch_size, tuple(f'{head}.' for head in entry.heads), entry.epoch, entry.scale)
    called = tuple(path for path in entry.losses if get_path(model, path).last_stats is not None)
    return losses, grads, called


def _without_scope(value):
    """``value`` without the ``_scope_`` keys that mmengine adds to dicts inherited through ``mmdet::``."""
    if isinstance(value, dict):
        return {k: _without_scope(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_scope(v) for v in value)
    return value


@pytest.mark.parametrize('name', [name for name, entry in ENTRIES.items() if entry.config is not None])
def test_config_changes_only_the_losses(name):
    entry = ENTRIES[name]
    ours = Config.fromfile(config_path(entry.config)).to_dict()
    assert ours.pop('custom_imports') == dict(imports=['ghm_mmdet'], allow_failed_imports=False)
    expected = Config.fromfile(config_path(entry.base)).to_dict()
    for path, loss in entry.losses.items():
        set_path(expected, f'model.{path}', loss)
    for path, value in entry.other_changes.items():
        set_path(expected, path, value)
    assert _without_scope(ours) == _without_scope(expected)


@pytest.mark.parametrize('name, batch_size', CELLS)
def test_loss_and_backward_reach_the_head(name, batch_size):
    entry = ENTRIES[name]
    model, _ = _model(name, 'ours')
    for path, loss in entry.losses.items():
        assert type(get_path(model, path)) is OURS[loss['type']], path

    losses, grads, called = _our_run(name, batch_size)
    assert called == tuple(entry.losses), 'a GHM loss of the config was never called'

    for key, value in loss_values(losses):
        assert torch.isfinite(value).all(), f'{key} = {value}'
    for path in entry.losses:
        key = _loss_key(path)
        assert sum(v for k, v in loss_values(losses) if k.split('[')[0] == key) > 0, key
    for layer in entry.layers:
        grad = grads.get(f'{layer}.weight')
        assert grad is not None, f'no gradient reached {layer}'
        assert torch.isfinite(grad).all(), f'{layer}: non-finite gradient'
        assert grad.abs().max() > 0, f'{layer}: zero gradient'


def _loss_key(path: str) -> str:
    """The key of the loss dict under which the loss at model path ``path`` is reported (Cascade R-CNN's
    stage ``i`` prefixes ``s{i}.``)."""
    head, loss = path.rsplit('.', 1)
    if head == 'rpn_head':
        return f'loss_rpn_{loss[len("loss_"):]}'
    stage = head.rsplit('.', 1)[-1]
    return f's{stage}.{loss}' if stage.isdigit() else loss


@pytest.mark.parametrize('name, batch_size', CELLS)
def test_equals_mmdet_builtin(name, batch_size):
    entry = ENTRIES[name]
    if entry.no_reference:
        pytest.skip(entry.no_reference)
    heads = tuple(f'{head}.' for head in entry.heads)
    ours_variant = 'ours-one-bin' if _has_softmax_ghmc(entry) else 'ours'
    ours_model = _fresh(name, ours_variant)
    reference_model, reference_state = _model(name, 'reference')
    for path, loss in entry.losses.items():
        expected = BUILTIN[loss['type']] if loss.get('use_sigmoid', True) else CrossEntropyLoss
        assert type(get_path(reference_model, path)) is expected, path
    # Our weights; every loss keeps its own freshly built buffers (edges, an empty moving average).
    state = copy.copy(reference_state)
    state.update((k, v) for k, v in ours_model.state_dict().items() if '.loss_' not in k)
    reference_model.load_state_dict(state)

    if entry.builtin_failure is not None:
        error, pattern = entry.builtin_failure
        with pytest.raises(error, match=pattern):
            run_loss(reference_model, batch_size, heads, entry.epoch, entry.scale)
        return

    if ours_variant == 'ours':
        ours, our_grads, _ = _our_run(name, batch_size)
    else:
        ours, our_grads = run_loss(ours_model, batch_size, heads, entry.epoch, entry.scale)
    reference, reference_grads = run_loss(reference_model, batch_size, heads, entry.epoch, entry.scale)

    ours, reference = dict(loss_values(ours)), dict(loss_values(reference))
    assert ours.keys() == reference.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], reference[key], rtol=RTOL, atol=1e-7,
                                   msg=lambda message, key=key: f'{key}: {message}')
    assert our_grads and our_grads.keys() == reference_grads.keys()
    for param, grad in our_grads.items():
        expected = reference_grads[param]
        # Scale-aware atol: entries far below the tensor's largest differ by summation order only.
        torch.testing.assert_close(grad, expected, rtol=RTOL, atol=RTOL * float(expected.abs().max()),
                                   msg=lambda message, param=param: f'grad of {param}: {message}')


#: The heads that normalise the classification loss themselves (RTMDet and TOOD divide by the sum of their
#: assignment metrics, YOLOv3 sums, YOLOX divides the sum by its positives): with one bin and no moving average
#: every beta is 1, so GHM-C with the reduction their configs set must equal the loss it replaces with its
#: focusing switched off.
SIGMOID_CE_SUM = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0, reduction='sum')
UNFOCUSED = {
    'rtmdet-tiny': {'bbox_head.loss_cls': dict(type='QualityFocalLoss', use_sigmoid=True, beta=0.0, loss_weight=1.0)},
    'tood': {'bbox_head.loss_cls': dict(type='QualityFocalLoss', use_sigmoid=True, activated=True, beta=0.0,
                                        loss_weight=1.0)},
    'yolov3': {'bbox_head.loss_cls': SIGMOID_CE_SUM},
    'yolox': {'bbox_head.loss_cls': SIGMOID_CE_SUM, 'bbox_head.loss_obj': SIGMOID_CE_SUM},
}


@pytest.mark.parametrize('name', sorted(UNFOCUSED))
def test_with_one_bin_ghm_has_the_scale_of_the_loss_it_replaces(name):
    entry = ENTRIES[name]
    model_cfg = entry_config(entry).model
    ours, replaced = copy.deepcopy(model_cfg), copy.deepcopy(model_cfg)
    for path, loss in UNFOCUSED[name].items():
        set_path(ours, path, dict(get_path(model_cfg, path), bins=1, momentum=0.0))
        set_path(replaced, path, loss)
    heads = ('bbox_head.',)
    our_losses, our_grads = run_loss(build(ours), 2, heads, entry.epoch)
    losses, grads = run_loss(build(replaced), 2, heads, entry.epoch)  # the same weights: build seeds
    ghm, unfocused = dict(loss_values(our_losses)), dict(loss_values(losses))
    assert ghm.keys() == unfocused.keys()
    for key in ghm:
        torch.testing.assert_close(ghm[key], unfocused[key], rtol=1e-4, atol=1e-6, msg=lambda m, key=key: f'{key}: {m}')
    for param, grad in our_grads.items():
        torch.testing.assert_close(grad, grads[param], rtol=1e-4, atol=1e-4 * float(grads[param].abs().max()))


@pytest.mark.parametrize('name, batch_size', TWO_STAGE_CELLS)
def test_two_stage_predicts_finite_boxes(name, batch_size):
    model = _fresh(name, 'ours')
    # Untrained, every class scores about 1 / 81, under the 0.05 threshold: keep all detections.
    model.roi_head.test_cfg.score_thr = 0.0
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch(batch_size), training=False)
        results = model.predict(data['inputs'], data['data_samples'])
    assert len(results) == batch_size
    for result in results:
        scores, bboxes = result.pred_instances.scores, result.pred_instances.bboxes
        assert len(scores) > 0 and bboxes.shape == (len(scores), 4)
        assert torch.isfinite(bboxes).all() and torch.isfinite(scores).all()
        assert ((scores > 0) & (scores <= 1)).all()


@functools.lru_cache(maxsize=None)
def _fsaf_with_ghmc():
    cfg = cpu_config(FSAF_BASE)
    # What a user would write: FSAF's loss_cls with its type changed (FSAFHead needs reduction='none').
    cfg.model.bbox_head.loss_cls = dict(GHMC_RECIPE, reduction='none')
    return build(cfg.model)


@pytest.mark.parametrize('batch_size', BATCH_SIZES, ids=lambda b: f'batch{b}')
def test_fsaf_refuses_ghmc(batch_size):
    # FSAFHead sums reduction='none' losses itself and divides by its positives, which would rescale
    # GHM-C's loss (already normalised by N through beta) by about N / num_pos; GHMC recognises the
    # (anchors * classes,) label weights that FSAFHead passes and says so.
    model = _fsaf_with_ghmc()
    assert type(model.bbox_head.loss_cls) is GHMC
    with pytest.raises(GHMArgumentError, match='FSAF'):
        run_loss(model, batch_size, ('bbox_head.',))

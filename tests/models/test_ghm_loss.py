"""What ghm_mmdet's GHMC/GHMR do beyond mmdet's: reductions, avg_factor, empty input, half precision,
non-finite input, torch.compile, warm start, and clear errors for bad input."""
import math

import pytest
import torch
from mmdet.models.losses import ghm_loss as mmdet_ghm

from ghm_mmdet.core import compat
from ghm_mmdet.models.losses import GHMC, GHMR

pytestmark = pytest.mark.compat


def cls_inputs(num=200, num_classes=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.randn(num, num_classes, generator=gen) * 3
    labels = torch.randint(0, num_classes + 1, (num,), generator=gen)
    weight = (torch.rand(num, generator=gen) > 0.1).float()
    return pred, labels, weight


def reg_inputs(num=100, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(num, 4, generator=gen) * 0.1, torch.randn(num, 4, generator=gen) * 0.1,
            (torch.rand(num, 4, generator=gen) > 0.3).float())


# ---------------------------------------------------------------- reductions and avg_factor

def test_mmdet_fails_with_sum_and_ours_does_not():
    pred, labels, weight = cls_inputs()
    with pytest.raises(ValueError):
        mmdet_ghm.GHMC(bins=10, reduction='sum')(pred, labels, weight)
    num_valid = int(weight.sum()) * pred.shape[1]
    mean = GHMC(bins=10)(pred, labels, weight)
    total = GHMC(bins=10, reduction='sum')(pred, labels, weight)
    assert total.item() == pytest.approx(mean.item() * num_valid, rel=1e-5)
    per_entry = GHMC(bins=10, reduction='none')(pred, labels, weight)
    assert per_entry.shape == pred.shape
    assert per_entry.sum().item() == pytest.approx(total.item(), rel=1e-5)


def test_reduction_override():
    pred, labels, weight = cls_inputs()
    loss = GHMC(bins=10)
    assert loss(pred, labels, weight, reduction_override='sum').item() == pytest.approx(
        GHMC(bins=10, reduction='sum')(pred, labels, weight).item(), rel=1e-6)
    assert loss(pred, labels, weight, reduction_override='none').shape == pred.shape
    pred_r, target_r, weight_r = reg_inputs()
    mean = GHMR()(pred_r, target_r, weight_r)
    total = GHMR()(pred_r, target_r, weight_r, reduction_override='sum')
    assert total.item() == pytest.approx(mean.item() * weight_r.sum().item(), rel=1e-5)


def test_avg_factor_is_accepted_and_ignored_as_in_mmdet():
    """Beta already holds N (Eq. 8); RetinaNet's avg_factor (the positives) would scale the loss by about
    N * C / num_pos. Any value a head passes, of any type, leaves the loss as it is, as mmdet's does."""
    import numpy as np
    pred, labels, weight = cls_inputs()
    plain = GHMC(bins=10)(pred, labels, weight)
    for avg_factor in (7, np.int64(7), 0.5, torch.tensor(3.0), '7', 0):
        assert GHMC(bins=10)(pred, labels, weight, avg_factor=avg_factor).item() == plain.item()
        assert mmdet_ghm.GHMC(bins=10)(pred, labels, weight, avg_factor=avg_factor).item() == \
            pytest.approx(plain.item(), rel=1e-6)
    pred_r, target_r, weight_r = reg_inputs()
    assert GHMR()(pred_r, target_r, weight_r, avg_factor=4.0).item() == \
        GHMR()(pred_r, target_r, weight_r).item()
    assert not hasattr(GHMC(), 'use_avg_factor')


def test_other_keyword_arguments_a_head_passes_are_ignored_as_in_mmdet():
    pred, labels, weight = cls_inputs()
    expected = mmdet_ghm.GHMC(bins=10)(pred, labels, weight, ignore_index=-1)
    assert GHMC(bins=10)(pred, labels, weight, ignore_index=-1).item() == pytest.approx(expected.item(),
                                                                                       rel=1e-6)


def test_loss_weight_scales():
    pred, labels, weight = cls_inputs()
    assert GHMC(bins=10, loss_weight=2.5)(pred, labels, weight).item() == pytest.approx(
        2.5 * GHMC(bins=10)(pred, labels, weight).item(), rel=1e-6)


# ---------------------------------------------------------------- empty and all-ignored input

EMPTY_CASES = {
    'ghmc labels, 0 anchors': (lambda: GHMC(bins=30, momentum=0.75),
                               lambda: (torch.zeros(0, 5), torch.zeros(0, dtype=torch.long),
                                        torch.zeros(0))),
    'ghmc one-hot, all ignored': (lambda: GHMC(bins=30, momentum=0.75),
                                  lambda: (torch.randn(8, 5), torch.ones(8, 5), torch.zeros(8, 5))),
    'ghmc labels, all ignored': (lambda: GHMC(bins=30, momentum=0.75, warm_start=True),
                                 lambda: (torch.randn(8, 5), torch.zeros(8, dtype=torch.long),
                                          torch.zeros(8))),
    'ghmr, 0 anchors': (lambda: GHMR(momentum=0.7),
                        lambda: (torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4))),
    'ghmr, all ignored': (lambda: GHMR(momentum=0.7, warm_start=True),
                          lambda: (torch.randn(8, 4), torch.randn(8, 4), torch.zeros(8, 4))),
}


@pytest.mark.parametrize('case', list(EMPTY_CASES))
@pytest.mark.parametrize('reduction', ['mean', 'sum'])
def test_empty_and_all_ignored_give_zero_and_leave_state(case, reduction):
    make_loss, make_inputs = EMPTY_CASES[case]
    loss_fn = make_loss()
    # Give the state a history first, so "unchanged" is not trivially zeros.
    if isinstance(loss_fn, GHMC):
        loss_fn(*cls_inputs(num_classes=5))
    else:
        loss_fn(*reg_inputs())
    before = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    pred, target, weight = make_inputs()
    pred.requires_grad_()
    loss = loss_fn(pred, target, weight, reduction_override=reduction)
    loss.backward()
    assert loss.item() == 0.0
    assert pred.grad is not None and (pred.grad == 0).all()
    for key, value in loss_fn.state_dict().items():
        assert torch.equal(value, before[key]), key


# ---------------------------------------------------------------- half precision

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('target_kind', ['labels', 'one_hot'])
def test_half_precision_is_binned_and_weighted_in_float32(dtype, target_kind):
    pred, labels, weight = cls_inputs(num=400, num_classes=8)
    pred = pred.to(dtype)
    target = labels if target_kind == 'labels' else (labels[:, None] == torch.arange(8)).float()
    if target_kind == 'one_hot':
        weight = weight[:, None].expand(400, 8).contiguous()
    half = pred.clone().requires_grad_()
    full = pred.float().requires_grad_()
    loss_half = GHMC(bins=30, momentum=0.75)(half, target, weight)
    loss_full = GHMC(bins=30, momentum=0.75)(full, target, weight)
    (loss_half * 100).backward()
    (loss_full * 100).backward()
    assert loss_half.dtype == torch.float32 and half.grad.dtype == dtype
    assert loss_half.item() == pytest.approx(loss_full.item(), rel=1e-3)
    assert torch.allclose(half.grad.float(), full.grad.to(dtype).float(), rtol=1e-2, atol=1e-3)


def test_weights_beyond_the_float16_range_stay_finite():
    # 200,000 easy entries and one hard one: its beta is N / (1 * 2) = 100,000 > 65,504 (fp16 max).
    pred = torch.full((200_001, 1), -12.0)
    pred[0] = 12.0
    labels = torch.ones(200_001, dtype=torch.long)  # background for 1 class
    loss_half = GHMC(bins=10)(pred.half(), labels, torch.ones(200_001))
    loss_full = GHMC(bins=10)(pred.half().float(), labels, torch.ones(200_001))
    assert math.isfinite(loss_half.item())
    assert loss_half.item() == pytest.approx(loss_full.item(), rel=1e-3)
    pred_r = torch.zeros(200_001, 1)
    pred_r[0] = 5.0
    loss_r = GHMR()(pred_r.half(), torch.zeros(200_001, 1).half(), torch.ones(200_001, 1))
    assert loss_r.item() == pytest.approx(GHMR()(pred_r, torch.zeros(200_001, 1),
                                                 torch.ones(200_001, 1)).item(), rel=1e-3)


# ---------------------------------------------------------------- non-finite input

@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_logits_keep_state_finite_and_loss_visible(bad):
    pred, labels, weight = cls_inputs()
    poisoned = pred.clone()
    poisoned[3, 1] = bad
    loss_fn = GHMC(bins=30, momentum=0.75)
    loss = loss_fn(poisoned, labels, weight)
    assert torch.isfinite(loss_fn.acc_sum).all()
    if bad != -float('inf'):  # sigmoid(-inf) = 0 is a legitimate, finite prediction
        assert not math.isfinite(loss.item())


def test_nan_entries_are_not_counted():
    pred, labels, weight = cls_inputs()
    weight = torch.ones_like(weight)
    poisoned = pred.clone()
    poisoned[5] = float('nan')
    with_nan, without_row = GHMC(bins=30, momentum=0.75), GHMC(bins=30, momentum=0.75)
    with_nan(poisoned, labels, weight)
    masked = weight.clone()
    masked[5] = 0
    without_row(pred, labels, masked)
    assert torch.equal(with_nan.acc_sum, without_row.acc_sum)


def test_nan_regression_deltas_keep_state_finite():
    pred, target, weight = reg_inputs()
    pred[0, 0] = float('nan')
    pred[1, 1] = float('inf')
    loss_fn = GHMR(momentum=0.7)
    loss = loss_fn(pred, target, torch.ones_like(weight))
    assert torch.isfinite(loss_fn.acc_sum).all() and not math.isfinite(loss.item())


# ---------------------------------------------------------------- warm start option

def test_warm_start_option_matches_the_seed_function():
    import torch.nn.functional as F

    from ghm_mmdet.core import warm_start_ghm_weights
    pred, labels, weight = cls_inputs()
    target = (labels[:, None] == torch.arange(6)).float()
    loss_fn = GHMC(bins=10, momentum=0.75, warm_start=True)
    state = None
    for _ in range(3):
        loss = loss_fn(pred, labels, weight, reduction_override='sum')
        beta, state = warm_start_ghm_weights(pred.sigmoid(), target,
                                             weight[:, None].expand_as(pred), state, 10, 0.75)
        expected = F.binary_cross_entropy_with_logits(pred, target, weight=beta, reduction='sum')
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(loss_fn.acc_sum, state.acc_sum)


@pytest.mark.parametrize('momentum', [0.0, 0.75])
def test_warm_start_beta_is_n_over_density_times_bins_and_zero_for_empty_regions(momentum):
    """The statistics' beta (max_beta, the fp16 warning, the histograms): an empty region's is 0, not
    N / (1e-12 * bins) = 8e13 here."""
    g = torch.cat([torch.full((600,), 0.05), torch.full((150,), 0.35), torch.full((50,), 0.95)])
    pred = torch.logit(g).unsqueeze(1)  # one class; label 1 is background, so g = sigmoid(x)
    loss = GHMC(bins=10, momentum=momentum, warm_start=True)
    loss(pred, torch.ones(800, dtype=torch.long), torch.ones(800))
    # First call: every region starts at N / bins = 80, then S_k = m * 80 + (1 - m) * count_k.
    density = {0: 600, 3: 150, 9: 50}
    expected = [800 / ((momentum * 80 + (1 - momentum) * density[k]) * 10) if k in density else 0.0
                for k in range(10)]
    assert loss.last_stats['beta'].tolist() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- torch.compile

@pytest.mark.slow
@pytest.mark.skipif(compat.TORCH_VERSION < compat.TRACED_ROUTE_MIN_TORCH, reason='the traced route needs torch >= 2.1')
@pytest.mark.parametrize('warm_start', [False, True])
def test_compiled_modules_match_eager(warm_start):
    torch._dynamo.reset()
    cases = [(GHMC, dict(bins=30, momentum=0.75, warm_start=warm_start), 'labels'),
             (GHMC, dict(bins=30, momentum=0.75, warm_start=warm_start), 'one_hot'),
             (GHMR, dict(mu=0.02, bins=10, momentum=0.7, warm_start=warm_start), 'deltas')]
    for loss_cls, kwargs, kind in cases:
        eager, compiled_module = loss_cls(**kwargs), loss_cls(**kwargs)
        compiled = torch.compile(compiled_module, fullgraph=True, dynamic=True)
        for num in (64, 101, 300):
            if kind == 'deltas':
                pred, target, weight = reg_inputs(num, seed=num)
            else:
                pred, target, weight = cls_inputs(num, seed=num)
                if kind == 'one_hot':
                    target = (target[:, None] == torch.arange(6)).float()
                    weight = weight[:, None].expand_as(pred).contiguous()
            p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
            expected, got = eager(p1, target, weight), compiled(p2, target, weight)
            expected.backward()
            got.backward()
            assert got.item() == pytest.approx(expected.item(), rel=1e-5), (kind, num)
            assert torch.allclose(p2.grad, p1.grad, rtol=1e-4, atol=1e-9), (kind, num)
            assert torch.allclose(compiled_module.acc_sum, eager.acc_sum), (kind, num)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize('loss_cls, kwargs, error, words', [
    (GHMC, dict(bins=0), ValueError, 'bins must be an int >= 1, got 0'),
    (GHMC, dict(bins=2.5), TypeError, "bins must be an int >= 1, got 2.5"),
    (GHMC, dict(bins=True), TypeError, 'bins'),
    (GHMR, dict(bins='10'), TypeError, "bins must be an int >= 1, got '10'"),
    (GHMC, dict(momentum=1.0), ValueError, r'momentum must be a float in \[0, 1\), got 1.0'),
    (GHMC, dict(momentum=-0.1), ValueError, r'momentum must be a float in \[0, 1\), got -0.1'),
    (GHMR, dict(momentum='0.7'), TypeError, 'momentum'),
    (GHMR, dict(mu=0.0), ValueError, 'mu must be a finite float > 0, got 0.0'),
    (GHMR, dict(mu=-0.02), ValueError, 'mu must be a finite float > 0, got -0.02'),
    (GHMC, dict(loss_weight=-1.0), ValueError, 'loss_weight must be a finite float >= 0, got -1.0'),
    (GHMR, dict(reduction='avg'), ValueError, "reduction must be one of .*got 'avg'"),
    (GHMC, dict(use_sigmoid=1), TypeError, 'use_sigmoid must be a bool, got 1'),
    (GHMC, dict(use_avg_factor=True), TypeError, "unexpected keyword argument 'use_avg_factor'"),
    (GHMC, dict(sync_stats=1), TypeError, 'sync_stats must be a bool'),
])
def test_bad_construction_arguments(loss_cls, kwargs, error, words):
    with pytest.raises(error, match=words):
        loss_cls(**kwargs)


def test_bad_call_arguments():
    pred, labels, weight = cls_inputs(num=10, num_classes=4)
    loss = GHMC()
    with pytest.raises(ValueError, match=r'target must have the shape of pred \(10, 4\)'):
        loss(pred, torch.zeros(10, 3), torch.ones(10, 3))
    with pytest.raises(ValueError, match=r'weight must have the shape of pred \(10, 4\), or one weight per row of '
                                         r'shape \(10,\) or \(10, 1\), got \(10, 3\)'):
        loss(pred, torch.zeros(10, 4), torch.ones(10, 3))  # a per-row weight broadcasts; nothing else does
    with pytest.raises(ValueError, match=r'one weight per row of shape \(10,\) or \(10, 1\), got \(4,\)'):
        loss(pred, labels.clamp(max=4), torch.ones(4))
    with pytest.raises(TypeError, match='pred must be a floating-point tensor, got dtype torch.int64'):
        loss(pred.long(), labels, weight)
    bad = labels.clone()
    bad[2] = 5
    with pytest.raises(ValueError, match=r'labels must be in \[0, 4\] \(4 = background\), got 5'):
        loss(pred, bad, weight)
    bad[2] = -1
    with pytest.raises(ValueError, match='got -1'):
        loss(pred, bad, weight)
    with pytest.raises(ValueError, match="reduction_override must be one of .*got 'avg'"):
        loss(pred, labels, weight, reduction_override='avg')
    with pytest.raises(ValueError, match=r'target must have the shape of pred \(10, 4\)'):
        GHMR()(pred, torch.zeros(10, 1), torch.ones(10, 4))
    with pytest.raises(ValueError, match=r'pred must have at least 1 dimension\(s\) \(\.\.\., C\), got a 0-d'):
        loss(pred[0, 0], labels[0])
    with pytest.raises(ValueError, match=r'target: binary or soft targets must be in \[0, 1\], got 2.0'):
        loss(pred, torch.full((10, 4), 2.0), torch.ones(10, 4))
    with pytest.raises(TypeError, match='weight must be a torch.Tensor, got list'):
        loss(pred, labels, [1.0] * 10)


def test_bad_input_leaves_the_state_untouched():
    loss = GHMC(bins=10, momentum=0.75)
    loss(*cls_inputs(num_classes=4))
    before = loss.acc_sum.clone()
    pred, labels, weight = cls_inputs(num_classes=4)
    labels[0] = 99
    with pytest.raises(ValueError):
        loss(pred, labels, weight)
    assert torch.equal(loss.acc_sum, before)


def test_weight_none_means_every_entry_is_valid():
    pred, labels, _ = cls_inputs()
    one_hot = (labels[:, None] == torch.arange(6)).float()
    for target in (labels, one_hot):
        assert GHMC(bins=10)(pred, target).item() == pytest.approx(
            GHMC(bins=10)(pred, target, torch.ones(target.shape)).item(), rel=1e-6)
    pred_r, target_r, _ = reg_inputs()
    assert GHMR()(pred_r, target_r).item() == pytest.approx(
        GHMR()(pred_r, target_r, torch.ones_like(pred_r)).item(), rel=1e-6)


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_mu_and_loss_weight_are_rejected(value):
    with pytest.raises(ValueError, match='mu must be a finite float > 0'):
        GHMR(mu=value)
    with pytest.raises(ValueError, match='loss_weight must be a finite float >= 0'):
        GHMC(loss_weight=value)


# ---------------------------------------------------------------- double backward, as mmdet's

def grad_of_grad(loss_fn, pred, *args):
    """d/dpred of |d loss / d pred|^2 through create_graph=True."""
    x = pred.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss_fn(x, *args), x, create_graph=True)
    (grad * grad).sum().backward()
    return grad.detach(), x.grad


@pytest.mark.parametrize('case', ['ghmc_labels', 'ghmc_one_hot', 'ghmr'])
def test_double_backward_equals_mmdets(case):
    if case == 'ghmr':
        pred, target, weight = reg_inputs(num=40)
        ours, theirs = GHMR(momentum=0.7), mmdet_ghm.GHMR(momentum=0.7)
    else:
        pred, target, weight = cls_inputs(num=60, num_classes=4)
        if case == 'ghmc_one_hot':
            target = (target[:, None] == torch.arange(4)).float()
            weight = weight[:, None].expand(-1, 4).contiguous()
        ours, theirs = GHMC(bins=10, momentum=0.75), mmdet_ghm.GHMC(bins=10, momentum=0.75)
    grad, second = grad_of_grad(ours, pred, target, weight)
    expected_grad, expected_second = grad_of_grad(theirs, pred, target, weight)
    assert torch.allclose(grad, expected_grad, rtol=1e-5, atol=1e-9)
    assert torch.allclose(second, expected_second, rtol=1e-4, atol=1e-9)

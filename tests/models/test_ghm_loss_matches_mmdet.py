"""Default numbers equal mmdet 3.3.0's built-in GHMC/GHMR (the real classes), call after call."""
import pytest
import torch
from mmdet.models.losses import ghm_loss as mmdet_ghm

from ghm_mmdet.models.losses import GHMC, GHMR

pytestmark = pytest.mark.compat


def run_both(ours, theirs, make_inputs, calls=3):
    for call in range(calls):
        pred, target, weight = make_inputs(call)
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        expected, got = theirs(p1, target, weight), ours(p2, target, weight)
        expected.backward()
        got.backward()
        assert got.item() == pytest.approx(expected.item(), rel=1e-5), f'call {call}'
        assert torch.allclose(p2.grad, p1.grad, rtol=1e-5, atol=1e-10), f'call {call}'
        if theirs.momentum > 0:
            assert torch.allclose(ours.acc_sum, theirs.acc_sum, rtol=1e-6), f'call {call}'


def classification_inputs(target_kind, weight_kind, num=400, num_classes=12):
    def make(call):
        gen = torch.Generator().manual_seed(call)
        pred = torch.randn(num, num_classes, generator=gen) * 3
        labels = torch.randint(0, num_classes + 1, (num,), generator=gen)
        weight = (torch.rand(num, generator=gen) > 0.1).float()
        if weight_kind == 'fractional':
            weight = weight * torch.rand(num, generator=gen)
        if target_kind == 'labels':
            return pred, labels, weight
        one_hot = (labels[:, None] == torch.arange(num_classes)).float()
        return pred, one_hot, weight[:, None].expand(num, num_classes).contiguous()
    return make


@pytest.mark.parametrize('bins', [1, 2, 10, 30, 100])
@pytest.mark.parametrize('momentum', [0.0, 0.75])
@pytest.mark.parametrize('target_kind', ['labels', 'one_hot'])
@pytest.mark.parametrize('weight_kind', ['binary', 'fractional'])
def test_ghmc_matches_mmdet(bins, momentum, target_kind, weight_kind):
    run_both(GHMC(bins=bins, momentum=momentum), mmdet_ghm.GHMC(bins=bins, momentum=momentum),
             classification_inputs(target_kind, weight_kind))


def regression_inputs(weight_kind, num=300):
    def make(call):
        gen = torch.Generator().manual_seed(100 + call)
        pred = torch.randn(num, 4, generator=gen) * 0.2
        target = torch.randn(num, 4, generator=gen) * 0.2
        weight = (torch.rand(num, 4, generator=gen) > 0.3).float()
        if weight_kind == 'fractional':
            weight = weight * torch.rand(num, 4, generator=gen)
        return pred, target, weight
    return make


@pytest.mark.parametrize('bins', [1, 2, 10, 30, 100])
@pytest.mark.parametrize('momentum', [0.0, 0.7])
@pytest.mark.parametrize('weight_kind', ['binary', 'fractional'])
def test_ghmr_matches_mmdet(bins, momentum, weight_kind):
    run_both(GHMR(mu=0.02, bins=bins, momentum=momentum),
             mmdet_ghm.GHMR(mu=0.02, bins=bins, momentum=momentum), regression_inputs(weight_kind))


@pytest.mark.parametrize('momentum', [0.0, 0.75])
def test_gradient_norm_exactly_zero_and_one(momentum):
    # sigmoid(+-200) rounds to exactly 1 / 0 in float32: g is exactly 0 or 1, the two ends of the axis.
    pred = torch.tensor([[200.0, -200.0], [-200.0, 200.0], [200.0, 200.0], [0.0, -200.0]])
    labels = torch.tensor([0, 1, 2, 1])
    weight = torch.ones(4)
    run_both(GHMC(bins=10, momentum=momentum), mmdet_ghm.GHMC(bins=10, momentum=momentum),
             lambda call: (pred, labels, weight))
    # GHM-R: d = 0 gives g = 0; |d| = 1e4 gives g = 1 exactly.
    pred_r = torch.tensor([[0.0, 1e4, -1e4, 0.01]])
    run_both(GHMR(bins=10, momentum=momentum), mmdet_ghm.GHMR(bins=10, momentum=momentum),
             lambda call: (pred_r, torch.zeros(1, 4), torch.ones(1, 4)))


def test_published_recipe_settings_over_many_calls():
    run_both(GHMC(bins=30, momentum=0.75), mmdet_ghm.GHMC(bins=30, momentum=0.75),
             classification_inputs('labels', 'binary', num=2000, num_classes=80), calls=8)
    run_both(GHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0),
             mmdet_ghm.GHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0),
             regression_inputs('binary'), calls=8)


def test_reduction_none_matches_mmdet():
    make = classification_inputs('labels', 'binary')
    pred, labels, weight = make(0)
    ours = GHMC(bins=10, reduction='none')(pred, labels, weight)
    theirs = mmdet_ghm.GHMC(bins=10, reduction='none')(pred, labels, weight)
    assert ours.shape == pred.shape and torch.allclose(ours, theirs, rtol=1e-5, atol=1e-8)

"""The core's routes (ghm_mmdet.core.routes): which one runs where, and each one against a plain PyTorch
reference written from the paper's equations (a loop over the unit regions, as in the authors' code), for
value, gradient and moving-average state."""
import pytest
import torch
import torch.nn.functional as F

from ghm_mmdet.core import compat, ghm_c_loss, ghm_r_loss, losses
from ghm_mmdet.core.routes import Route, choose_route

pytestmark = pytest.mark.compat
CPU, CUDA = torch.device('cpu'), torch.device('cuda')  # choose_route reads only the device type

#: The traced route needs torch >= 2.1 (ghm_mmdet.core.compat); older torch refuses it (tested below).
needs_traced_route = pytest.mark.skipif(compat.TORCH_VERSION < compat.TRACED_ROUTE_MIN_TORCH,
                                        reason='torch 2.0 compiles the GHM losses wrongly; they refuse it')


@pytest.mark.parametrize('device, kwargs, expected', [
    (CPU, dict(labels=True), Route.LABEL_FUSED),
    (CPU, dict(labels=True, summed=False), Route.DENSE),
    (CPU, dict(labels=False), Route.DENSE),
    (CUDA, dict(labels=True), Route.DENSE),
    (CPU, dict(loss='ghm_c_softmax', labels=True), Route.DENSE),
    (CPU, dict(loss='ghm_r', weighted=True), Route.SELECTED),
    (CPU, dict(loss='ghm_r', weighted=True, summed=False), Route.DENSE),
    (CPU, dict(loss='ghm_r', weighted=False), Route.DENSE),
    (CUDA, dict(loss='ghm_r', weighted=True), Route.DENSE),
])
def test_choose_route_in_eager_mode(device, kwargs, expected):
    assert choose_route(device, **kwargs) is expected


@needs_traced_route
def test_choose_route_while_traced():
    def probe(x):
        return x + 1 if choose_route(x.device, labels=True) is Route.TRACED else x - 1

    torch._dynamo.reset()
    assert torch.compile(probe, backend='eager', fullgraph=True)(torch.zeros(1)).item() == 1


def reference_beta(g, valid, bins, last_edge, total, acc_sum, momentum):
    """Eq. 4-9 with a loop over the regions: beta per entry and the new state (mmdet's moving average)."""
    edges = [k / bins for k in range(bins + 1)]
    edges[-1] = last_edge
    beta, acc_sum, non_empty = torch.zeros_like(g), acc_sum.clone(), 0
    counted = []
    for k in range(bins):
        in_region = valid & (g >= edges[k]) & (g < edges[k + 1])
        count = int(in_region.sum())
        counted.append((in_region, count))
        non_empty += count > 0
    for k, (in_region, count) in enumerate(counted):
        if count:
            if momentum > 0:
                acc_sum[k] = momentum * acc_sum[k] + (1 - momentum) * count
                beta[in_region] = total / float(acc_sum[k])
            else:
                beta[in_region] = total / count
    return (beta / max(non_empty, 1)), acc_sum


def reference_ghm_c(x, one_hot, valid, bins, acc_sum, momentum):
    g = (torch.sigmoid(x.detach()) - one_hot).abs()
    total = max(float(valid.sum()), 1.0)
    beta, acc_sum = reference_beta(g, valid, bins, 1.0 + 1e-6, total, acc_sum, momentum)
    bce = F.binary_cross_entropy_with_logits(x, one_hot, reduction='none')
    return (beta * bce).sum() / total, acc_sum


def reference_ghm_r(pred, target, weight, mu, bins, acc_sum, momentum):
    diff = pred - target
    asl1 = torch.sqrt(diff * diff + mu * mu) - mu
    g = (diff / torch.sqrt(diff * diff + mu * mu)).abs().detach()
    total = max(float(weight.sum()), 1.0)
    beta, acc_sum = reference_beta(g, weight > 0, bins, 1e3, total, acc_sum, momentum)
    return (beta * asl1).sum() / total, acc_sum


def through(route, loss_fn, monkeypatch):
    """``loss_fn`` compiled for the traced route, else with ``choose_route`` forced to ``route``."""
    if route is Route.TRACED:
        torch._dynamo.reset()
        return torch.compile(loss_fn, fullgraph=True, dynamic=False)
    monkeypatch.setattr(losses, 'choose_route', lambda *args, **kwargs: route)
    return loss_fn


def cls_problem(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(90, 7, generator=gen) * 3
    labels = torch.randint(0, 8, (90,), generator=gen)
    valid = torch.rand(90, generator=gen) > 0.15
    return logits, labels, valid


@pytest.mark.parametrize('route', [Route.LABEL_FUSED, Route.DENSE,
                                   pytest.param(Route.TRACED, marks=needs_traced_route)])
@pytest.mark.parametrize('bins, momentum', [(10, 0.0), (30, 0.75)])
def test_every_ghm_c_route_equals_the_reference(monkeypatch, route, bins, momentum):
    state = ref_state = torch.rand(bins) * 40 if momentum else torch.zeros(bins)
    loss_fn = through(route, ghm_c_loss, monkeypatch)
    for seed in range(3):  # call after call: the state carries over
        logits, labels, valid = cls_problem(seed)
        one_hot = (labels.unsqueeze(-1) == torch.arange(7)).float()
        x, x_ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        loss, state = loss_fn(x, labels, valid, state, bins=bins, momentum=momentum)
        expected, ref_state = reference_ghm_c(x_ref, one_hot, valid.unsqueeze(-1).expand(90, 7), bins,
                                              ref_state, momentum)
        loss.backward()
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(x.grad, x_ref.grad, rtol=1e-5, atol=1e-8)
        if momentum:  # without momentum the state is unused
            assert torch.allclose(state, ref_state, rtol=1e-6)


@pytest.mark.parametrize('route', [Route.SELECTED, Route.DENSE,
                                   pytest.param(Route.TRACED, marks=needs_traced_route)])
def test_every_ghm_r_route_equals_the_reference(monkeypatch, route):
    loss_fn = through(route, ghm_r_loss, monkeypatch)
    state = ref_state = torch.rand(10) * 20
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        pred, target = torch.randn(60, 4, generator=gen) * 0.05, torch.randn(60, 4, generator=gen) * 0.05
        weight = (torch.rand(60, 4, generator=gen) > 0.7).float()
        x, x_ref = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        loss, state = loss_fn(x, target, weight, state, mu=0.02, bins=10, momentum=0.7)
        expected, ref_state = reference_ghm_r(x_ref, target, weight, 0.02, 10, ref_state, 0.7)
        loss.backward()
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(x.grad, x_ref.grad, rtol=1e-5, atol=1e-8)
        assert torch.allclose(state, ref_state, rtol=1e-6)


@pytest.mark.skipif(compat.TORCH_VERSION >= compat.TRACED_ROUTE_MIN_TORCH, reason='this torch compiles them right')
def test_compiling_on_an_old_torch_stops_with_the_version_it_needs():
    logits, labels, valid = cls_problem(0)
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match=r'needs torch >= 2.1: torch 2.0 compiles them to wrong values'):
        torch.compile(ghm_c_loss)(logits, labels, valid, bins=10)


def test_the_traced_route_is_refused_below_its_torch(monkeypatch):
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 0))
    with pytest.raises(RuntimeError, match=r'needs torch >= 2.1'):
        compat.check_traced_route()
    monkeypatch.setattr(compat, 'TORCH_VERSION', compat.TRACED_ROUTE_MIN_TORCH)
    compat.check_traced_route()

"""The public functional API: one call per loss, equal to mmdet's modules call after call, the softmax
GHM-C against its definition, the compiled form against the eager one, and clear errors."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.losses import ghm_loss as mmdet_ghm

from ghm_mmdet import core
from ghm_mmdet.core import GHMArgumentError, GHMArgumentTypeError, compat, ghm_c_loss, ghm_c_softmax_loss, ghm_r_loss

pytestmark = pytest.mark.compat


def test_public_surface_is_what_a_user_needs():
    assert sorted(core.__all__) == sorted([
        'ghm_c_loss', 'ghm_c_softmax_loss', 'ghm_r_loss', 'warm_start_ghm_weights', 'GHMState',
        'GHMArgumentError', 'GHMArgumentTypeError'])


def cls_problem(seed, num=120, num_classes=6):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, num_classes, generator=gen) * 3
    labels = torch.randint(0, num_classes + 1, (num,), generator=gen)
    valid = torch.rand(num, generator=gen) > 0.1
    return logits, labels, valid


@pytest.mark.parametrize('target_kind', ['labels', 'one_hot'])
@pytest.mark.parametrize('bins,momentum', [(1, 0.0), (10, 0.0), (30, 0.75)])
def test_ghm_c_loss_equals_mmdet_call_after_call(target_kind, bins, momentum):
    reference = mmdet_ghm.GHMC(bins=bins, momentum=momentum)
    acc_sum = None
    for step in range(4):
        logits, labels, valid = cls_problem(step)
        if target_kind == 'labels':
            targets, mask = labels, valid
        else:
            targets = (labels[:, None] == torch.arange(6)).float()
            mask = valid[:, None].expand(-1, 6)
        x_ours, x_ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        loss, acc_sum = ghm_c_loss(x_ours, targets, mask, acc_sum, bins=bins, momentum=momentum)
        expected = reference(x_ref, targets, mask.float())
        loss.backward()
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-9)
        if momentum:
            assert torch.allclose(acc_sum, reference.acc_sum, rtol=1e-6)


@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (10, 0.7)])
def test_ghm_r_loss_equals_mmdet_call_after_call(bins, momentum):
    reference = mmdet_ghm.GHMR(mu=0.02, bins=bins, momentum=momentum)
    acc_sum = None
    for step in range(4):
        gen = torch.Generator().manual_seed(step)
        pred, target = torch.randn(50, 4, generator=gen) * 0.1, torch.randn(50, 4, generator=gen) * 0.1
        weight = (torch.rand(50, 4, generator=gen) > 0.3).float()
        x_ours, x_ref = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        loss, acc_sum = ghm_r_loss(x_ours, target, weight, acc_sum, mu=0.02, bins=bins, momentum=momentum)
        expected = reference(x_ref, target, weight)
        loss.backward()
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-9)
        if momentum:
            assert torch.allclose(acc_sum, reference.acc_sum, rtol=1e-6)



@pytest.mark.parametrize('weight_kind', ['sparse', 'all', 'none_valid', 'fractional'])
def test_ghm_r_on_the_weighted_entries_only_equals_the_dense_computation(weight_kind):
    # Eager on the CPU, a summed GHM-R computes only the entries with weight > 0; reduction='none' keeps the
    # dense computation. The two must agree: the same state, the same loss, and bit-identical gradients
    # (an entry of weight 0 gets exactly 0 in both).
    gen = torch.Generator().manual_seed(3)
    pred, target = torch.randn(400, 4, generator=gen) * 0.1, torch.randn(400, 4, generator=gen) * 0.1
    weight = {'sparse': (torch.rand(400, 4, generator=gen) > 0.97).float(),
              'all': torch.ones(400, 4),
              'none_valid': torch.zeros(400, 4),
              'fractional': torch.rand(400, 4, generator=gen).mul(2).floor() * 0.5}[weight_kind]
    state = torch.rand(10, generator=gen) * 50
    x_sum, x_none = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    loss_sum, acc_sum = ghm_r_loss(x_sum, target, weight, state, momentum=0.7, reduction='sum')
    per_entry, acc_none = ghm_r_loss(x_none, target, weight, state, momentum=0.7, reduction='none')
    loss_sum.backward()
    per_entry.sum().backward()
    assert torch.equal(acc_sum, acc_none)
    assert loss_sum.item() == pytest.approx(per_entry.sum().item(), rel=1e-6, abs=1e-12)
    assert torch.equal(x_sum.grad, x_none.grad)
    assert torch.equal(x_sum.grad[weight == 0], torch.zeros(int((weight == 0).sum())))
    mean, _ = ghm_r_loss(pred, target, weight, state, momentum=0.7)
    assert mean.item() == pytest.approx(loss_sum.item() / max(weight.sum().item(), 1.0), rel=1e-6, abs=1e-12)


def test_state_is_returned_never_modified():
    logits, labels, valid = cls_problem(0)
    state = torch.tensor([5.0] * 10)
    _, new_state = ghm_c_loss(logits, labels, valid, state, momentum=0.5)
    assert state.tolist() == [5.0] * 10 and not torch.equal(new_state, state)


def test_ghm_c_reductions():
    logits, labels, valid = cls_problem(1)
    mean, _ = ghm_c_loss(logits, labels, valid, bins=10)
    total, _ = ghm_c_loss(logits, labels, valid, bins=10, reduction='sum')
    per_entry, _ = ghm_c_loss(logits, labels, valid, bins=10, reduction='none')
    n = int(valid.sum()) * 6
    assert total.item() == pytest.approx(mean.item() * n, rel=1e-5)
    assert per_entry.shape == logits.shape
    assert per_entry.sum().item() == pytest.approx(total.item(), rel=1e-5)
    assert (per_entry[~valid] == 0).all()


# ---------------------------------------------------------------- softmax GHM-C


def softmax_problem(seed, num=64, num_outputs=5):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, num_outputs, generator=gen) * 2
    labels = torch.randint(0, num_outputs, (num,), generator=gen)
    valid = torch.rand(num, generator=gen) > 0.25
    return logits, labels, valid


def test_softmax_with_one_bin_is_the_mean_cross_entropy_value_and_gradient():
    logits, labels, valid = softmax_problem(0)
    x, x_ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss, _ = ghm_c_softmax_loss(x, labels, valid, bins=1)
    expected = F.cross_entropy(x_ref[valid], labels[valid])
    loss.backward()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-5, atol=1e-9)


def test_softmax_hand_derived_beta():
    # Two outputs: logits (0, 0), (0, 0), (log 3, 0) with labels 0, 0, 0: p_y = 1/2, 1/2, 3/4, so
    # g = 1/2, 1/2, 1/4. bins=2 (edges 0, 0.5, 1+): regions 1, 1, 0; n = 2, N = 3:
    # beta = 3 / (2 * 2) = 0.75 (g = 1/2), 3 / (1 * 2) = 1.5 (g = 1/4).
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [torch.log(torch.tensor(3.0)).item(), 0.0]])
    labels = torch.tensor([0, 0, 0])
    ce = torch.tensor([torch.log(torch.tensor(2.0)), torch.log(torch.tensor(2.0)),
                       -torch.log(torch.tensor(0.75))])
    per_sample, acc_sum = ghm_c_softmax_loss(logits, labels, bins=2, reduction='none')
    assert per_sample.tolist() == pytest.approx((torch.tensor([0.75, 0.75, 1.5]) * ce).tolist(), rel=1e-6)
    mean, _ = ghm_c_softmax_loss(logits, labels, bins=2)
    assert mean.item() == pytest.approx(per_sample.sum().item() / 3, rel=1e-6)
    assert acc_sum.tolist() == [1.0, 2.0]


def test_softmax_weights_of_valid_samples_sum_to_n_and_ignored_get_zero():
    logits, labels, valid = softmax_problem(2, num=200)
    per_sample, _ = ghm_c_softmax_loss(logits, labels, valid, bins=10, reduction='none')
    ce = F.cross_entropy(logits, labels, reduction='none')
    beta = per_sample / ce
    assert beta[valid].sum().item() == pytest.approx(int(valid.sum()), rel=1e-5)
    assert (per_sample[~valid] == 0).all()


def test_softmax_moving_average_equals_the_sigmoid_one_on_the_same_gradient_norms():
    """The density machinery is shared: with g = 1 - p_y fed to both, acc_sum is the same."""
    acc_softmax = None
    for step in range(3):
        logits, labels, valid = softmax_problem(step)
        _, acc_softmax = ghm_c_softmax_loss(logits, labels, valid, acc_softmax, bins=7, momentum=0.6)
    # Rebuild the same counts by hand: S <- 0.6 S + 0.4 R on non-empty regions.
    expected = torch.zeros(7, dtype=torch.float64)
    for step in range(3):
        logits, labels, valid = softmax_problem(step)
        g = 1 - torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
        region = torch.clamp((g[valid] * 7).floor().long(), max=6)
        counts = torch.bincount(region, minlength=7).double()
        expected = torch.where(counts > 0, 0.6 * expected + 0.4 * counts, expected)
    assert torch.allclose(acc_softmax.double(), expected, rtol=1e-6)


# ---------------------------------------------------------------- compiled against eager


#: The traced route needs torch >= 2.1 (ghm_mmdet.core.compat); older torch refuses it (tested below).
needs_traced_route = pytest.mark.skipif(compat.TORCH_VERSION < compat.TRACED_ROUTE_MIN_TORCH,
                                        reason='torch 2.0 compiles the GHM losses wrongly; they refuse it')


def compiled(fn):
    return torch.compile(fn, fullgraph=True, dynamic=True)


@needs_traced_route
@pytest.mark.parametrize('case', ['labels', 'one_hot', 'none', 'softmax', 'ghm_r'])
def test_compiled_form_equals_eager_value_gradient_and_state(case):
    """The fused (traced) form and the eager form share the mathematics; this is the fast check."""
    torch._dynamo.reset()
    logits, labels, valid = cls_problem(4, num=96)
    one_hot = (labels[:, None] == torch.arange(6)).float()
    if case == 'ghm_r':
        target = torch.randn(96, 6) * 0.1

        def fn(x, state):
            return ghm_r_loss(x * 0.05, target, valid[:, None].expand(-1, 6).float(), state, momentum=0.7)
        state = torch.zeros(10)
    elif case == 'softmax':
        def fn(x, state):
            return ghm_c_softmax_loss(x, labels.clamp(max=5), valid, state, bins=30, momentum=0.75)
        state = torch.zeros(30)
    else:
        targets = labels if case in ('labels', 'none') else one_hot
        mask = valid if case in ('labels', 'none') else valid[:, None].expand(-1, 6)
        reduction = 'none' if case == 'none' else 'mean'

        def fn(x, state):
            loss, new_state = ghm_c_loss(x, targets, mask, state, bins=30, momentum=0.75,
                                         reduction=reduction)
            return loss.sum(), new_state
        state = torch.zeros(30)
    x_eager, x_compiled = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    eager_loss, eager_state = fn(x_eager, state)
    compiled_loss, compiled_state = compiled(fn)(x_compiled, state)
    eager_loss.backward()
    compiled_loss.backward()
    assert compiled_loss.item() == pytest.approx(eager_loss.item(), rel=1e-5)
    assert torch.allclose(x_compiled.grad, x_eager.grad, rtol=1e-4, atol=1e-8)
    assert torch.equal(compiled_state, eager_state)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize('call,error,words', [
    (lambda x, y: ghm_c_loss(x, y, bins=0), GHMArgumentError, 'bins must be an int >= 1, got 0'),
    (lambda x, y: ghm_c_loss(x, y, momentum=1.0), GHMArgumentError, 'momentum must be a float in [0, 1)'),
    (lambda x, y: ghm_c_loss(x, y, reduction='avg'), GHMArgumentError, "reduction must be one of"),
    (lambda x, y: ghm_c_loss(x, y, acc_sum=torch.zeros(3)), GHMArgumentError,
     'acc_sum must have shape (10,) for bins=10, got (3,)'),
    (lambda x, y: ghm_c_loss(x, y + 100), GHMArgumentError,
     'target: integer labels must be in [0, 6] (6 = background)'),
    (lambda x, y: ghm_c_loss(x, y, torch.ones(3, dtype=torch.bool)), GHMArgumentError,
     'weight must have the shape of pred (120, 6), or one weight per row of shape (120,) or (120, 1), got (3,)'),
    (lambda x, y: ghm_c_loss(x.long(), y), GHMArgumentTypeError, 'pred must be a floating-point tensor'),
    (lambda x, y: ghm_c_loss(x, y.float()), GHMArgumentError,
     "target must be binary or soft targets of the shape of pred (120, 6), integer labels of shape (120,), or "
     "QualityFocalLoss's (labels, scores) of shape (120,) each, got torch.float32 of shape (120,)"),
    (lambda x, y: ghm_c_loss(x, y[:7]), GHMArgumentError, 'each, got torch.int64 of shape (7,)'),
    (lambda x, y: ghm_c_loss(x, [0] * 120), GHMArgumentError,
     "target given as a list must be QualityFocalLoss's (labels, scores), got 120 elements"),
    (lambda x, y: ghm_c_softmax_loss(x, y), GHMArgumentError, 'target: integer labels must be in [0, 5], got 6'),
    (lambda x, y: ghm_c_softmax_loss(x, y.float()), GHMArgumentError,
     'target must be integer labels of shape (120,) for softmax pred (120, 6), got torch.float32'),
    (lambda x, y: ghm_c_softmax_loss(x, y.clamp(max=5), torch.ones(3)), GHMArgumentError,
     'weight must have the shape of target (120,), got (3,)'),
    (lambda x, y: ghm_r_loss(x, x[:3]), GHMArgumentError, 'target must have the shape of pred'),
    (lambda x, y: ghm_r_loss(x, x, mu=0), GHMArgumentError, 'mu must be a finite float > 0, got 0.0'),
    (lambda x, y: ghm_c_loss(x[0, 0], y), GHMArgumentError,
     'pred must have at least 1 dimension(s) (..., C), got a 0-d tensor of shape ()'),
    (lambda x, y: ghm_c_softmax_loss(x[0, 0], y), GHMArgumentError, 'pred must have at least 1 dimension'),
    (lambda x, y: ghm_c_loss(x, torch.full_like(x, 2.0)), GHMArgumentError,
     'target: binary or soft targets must be in [0, 1], got 2.0'),
    (lambda x, y: ghm_c_loss(x, torch.full_like(x, -0.5)), GHMArgumentError, 'must be in [0, 1], got -0.5'),
    (lambda x, y: ghm_c_loss(x, torch.full_like(x, float('nan'))), GHMArgumentError, 'must be in [0, 1], got nan'),
    (lambda x, y: ghm_c_loss(x, y, acc_sum=torch.zeros(10, dtype=torch.long)), GHMArgumentTypeError,
     'acc_sum must be a floating-point tensor'),
    (lambda x, y: ghm_c_loss(x, y, weight=[True] * 120), GHMArgumentTypeError, 'weight must be a torch.Tensor'),
    (lambda x, y: ghm_r_loss(x.long(), x), GHMArgumentTypeError, 'pred must be a floating-point tensor'),
    (lambda x, y: ghm_r_loss(x, x, x[:2]), GHMArgumentError, 'weight must have the shape of pred'),
    (lambda x, y: ghm_r_loss(x, x, bins=2.5), GHMArgumentTypeError, 'bins must be an int >= 1, got 2.5'),
])
def test_bad_arguments_name_the_argument_value_and_what_is_accepted(call, error, words):
    logits, labels, _ = cls_problem(0)
    labels[0] = 6  # background is valid for sigmoid labels, out of range for softmax over 6 outputs
    with pytest.raises(error) as info:
        call(logits, labels)
    assert words in str(info.value)
    assert isinstance(info.value, (ValueError, TypeError)) and isinstance(info.value, AssertionError)


@pytest.mark.parametrize('loss_fn', [ghm_c_loss, ghm_c_softmax_loss])
def test_a_weight_is_the_mask_of_its_positive_entries(loss_fn):
    """As in mmdet and GHM-R: an entry takes part where weight > 0, whatever its dtype; for GHM-C its
    magnitude is not used."""
    logits, labels, valid = cls_problem(2)
    labels = labels.clamp(max=5)
    weights = valid * torch.rand(120, generator=torch.Generator().manual_seed(0)).add(0.5)
    state = torch.rand(10) * 30
    expected = loss_fn(logits, labels, valid, state, momentum=0.5)
    for weight in (weights, weights.double(), valid.long()):
        loss, acc_sum = loss_fn(logits, labels, weight, state, momentum=0.5)
        assert torch.equal(loss, expected[0]) and torch.equal(acc_sum, expected[1])

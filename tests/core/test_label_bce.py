"""The chunked eager label path equals the plain one-hot computation, keeps autograd's contract (double
backward, no input written) and takes logits of any layout."""
import pytest
import torch
import torch.nn.functional as F

from ghm_mmdet.core import GHMState, ghm_c_loss
from ghm_mmdet.core.density import GHMC_LAST_EDGE, bin_counts, bin_indices, unit_region_edges
from ghm_mmdet.core.gradient_norm import sigmoid_gradient_norm
from ghm_mmdet.core.label_bce import label_bin_counts


def one_hot(labels, num_classes):
    return (labels[..., None] == torch.arange(num_classes)).float()


def problem(num=300, num_classes=7, seed=0, scale=4.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, num_classes, generator=gen) * scale
    logits[0, 2] = 200.0  # sigmoid rounds to 1: g = 0 or 1 exactly
    labels = torch.randint(0, num_classes + 1, (num,), generator=gen)
    labels[0] = 2
    valid = torch.rand(num, generator=gen) > 0.2
    return logits, labels, valid


@pytest.mark.parametrize('chunk_entries', [None, 5 * 7])
def test_label_regions_and_counts_equal_the_one_hot_path(monkeypatch, chunk_entries):
    """The chunked first pass puts every entry in the region the dense one-hot computation does."""
    from ghm_mmdet.core import label_bce
    if chunk_entries:
        monkeypatch.setattr(label_bce, 'CHUNK_ENTRIES', chunk_entries)
    logits, labels, valid = problem()
    edges = unit_region_edges(30, GHMC_LAST_EDGE)
    expected = bin_indices(sigmoid_gradient_norm(logits, one_hot(labels, 7)), edges, valid[:, None].expand(300, 7))
    counts, regions = label_bin_counts(logits, labels, valid[:, None], edges)
    assert regions.dtype == (torch.uint8 if chunk_entries else torch.int32)
    assert torch.equal(regions.long(), expected.long())
    assert torch.equal(counts, bin_counts(expected, 30))


@pytest.mark.parametrize('scale', [1.0, 30.0])
@pytest.mark.parametrize('momentum', [0.0, 0.75])
def test_label_path_equals_one_hot_targets_value_gradient_and_state(scale, momentum):
    logits, labels, valid = problem(scale=scale, seed=int(scale))
    x_labels = logits.clone().requires_grad_()
    x_one_hot = logits.clone().requires_grad_()
    state_labels = state_one_hot = None
    for _ in range(2):
        a, state_labels = ghm_c_loss(x_labels, labels, valid, state_labels, bins=30, momentum=momentum)
        b, state_one_hot = ghm_c_loss(x_one_hot, one_hot(labels, 7), valid[:, None].expand(300, 7),
                                      state_one_hot, bins=30, momentum=momentum)
        # softplus (labels) against binary_cross_entropy_with_logits (one-hot): see test below.
        assert a.item() == pytest.approx(b.item(), rel=2e-5)
        a.backward()
        b.backward()
    assert torch.allclose(x_labels.grad, x_one_hot.grad, rtol=1e-5, atol=1e-8)
    assert torch.equal(state_labels, state_one_hot)


def test_softplus_value_is_more_accurate_than_bce_with_logits_for_confident_logits():
    """At |x| ~ 12 the float32 BCE-with-logits formula loses about 1.4e-5 relative; softplus does not."""
    x = torch.tensor([[12.0, -12.0]])
    labels = torch.tensor([0])  # targets [1, 0]: losses softplus(-12) twice
    exact = 2 * torch.nn.functional.softplus(torch.tensor(-12.0, dtype=torch.float64)).item()
    ours, _ = ghm_c_loss(x, labels, bins=1, reduction='sum')
    bce = F.binary_cross_entropy_with_logits(x, torch.tensor([[1.0, 0.0]]), reduction='sum')
    assert abs(ours.item() / exact - 1) < 1e-6
    assert abs(bce.item() / exact - 1) > 1e-6


def test_non_contiguous_logits_of_any_layout():
    """A RetinaNet-style head at batch 1 with one anchor per location passes a transposed (N, C) view."""
    logits, labels, valid = problem(num=64, num_classes=5, seed=3)
    transposed = logits.t().contiguous().t()  # same values, column-major
    assert not transposed.is_contiguous()
    expected, _ = ghm_c_loss(logits, labels, valid, bins=10)
    for view in (transposed, logits[:, None, :].expand(64, 2, 5)[:, 0, :]):
        x = view.detach().requires_grad_()
        loss, _ = ghm_c_loss(x, labels, valid, bins=10)
        loss.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        assert torch.isfinite(x.grad).all()
    one_hot_loss, _ = ghm_c_loss(transposed, one_hot(labels, 5), valid[:, None].expand(64, 5), bins=10)
    assert one_hot_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def double_backward(loss_fn, x):
    """grad of the loss with create_graph=True, then the gradient of the gradient's square norm."""
    x = x.detach().requires_grad_()
    (grad,) = torch.autograd.grad(loss_fn(x), x, create_graph=True)
    (grad * grad).sum().backward()
    return grad.detach(), x.grad


@pytest.mark.parametrize('target_kind', ['labels', 'one_hot'])
def test_double_backward_equals_the_one_hot_bce_reference(target_kind):
    logits, labels, valid = problem(num=50, num_classes=4, seed=5, scale=2.0)
    targets = labels if target_kind == 'labels' else one_hot(labels, 4)
    mask = valid if target_kind == 'labels' else valid[:, None].expand(50, 4)
    _, reference_state = ghm_c_loss(logits, targets, mask, bins=5)
    weights_holder = {}

    def ours(x):
        return ghm_c_loss(x, targets, mask, bins=5)[0]

    def reference(x):  # BCE weighted by the same beta, which is a constant of x
        if 'w' not in weights_holder:
            from ghm_mmdet.core.losses import ghm_c
            result = ghm_c(x.detach(), one_hot(labels, 4), valid[:, None].expand(50, 4), GHMState.zeros(5), 0.0,
                           'none')
            bce = F.binary_cross_entropy_with_logits(x.detach(), one_hot(labels, 4), reduction='none')
            weights_holder['w'] = torch.where(bce > 0, result.loss / bce, 0.0)
            weights_holder['n'] = result.density.total.float()
        return F.binary_cross_entropy_with_logits(x, one_hot(labels, 4), weight=weights_holder['w'],
                                                  reduction='sum') / weights_holder['n']

    grad, second = double_backward(ours, logits)
    expected_grad, expected_second = double_backward(reference, logits)
    assert torch.allclose(grad, expected_grad, rtol=1e-5, atol=1e-8)
    assert torch.allclose(second, expected_second, rtol=1e-4, atol=1e-9)
    assert reference_state.shape == (5,)


def test_the_autograd_function_writes_into_no_input():
    logits, labels, valid = problem(num=40, num_classes=3, seed=2)
    x = logits.clone().requires_grad_()
    before = (x.detach().clone(), labels.clone(), valid.clone())
    versions = (x._version, labels._version, valid._version)
    loss, _ = ghm_c_loss(x, labels, valid, bins=10)
    loss.backward()
    assert (x._version, labels._version, valid._version) == versions
    assert all(torch.equal(a, b) for a, b in zip(before, (x.detach(), labels, valid)))


def test_half_input_gives_half_gradient_and_float32_loss():
    logits = torch.randn(10, 3).half().requires_grad_()
    loss, _ = ghm_c_loss(logits, torch.tensor([0, 1, 2, 3] * 2 + [0, 0]), bins=10)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.float16


@pytest.mark.parametrize('record_shares', [False, True])
def test_chunked_passes_equal_one_chunk(monkeypatch, record_shares):
    """Large inputs run in row chunks; with chunks of 4 rows (and a last one of 1) nothing changes: the
    same counts and state, and the gradients, shares and loss up to the last bits (vectorised and scalar
    sigmoid differ by an ulp, and which entries fall in a chunk's scalar tail depends on the chunking)."""
    from ghm_mmdet.core import label_bce, losses
    logits, labels, valid = problem(num=301, seed=5)
    results = {}
    for chunk_entries in (label_bce.CHUNK_ENTRIES, 4 * 7):
        monkeypatch.setattr(label_bce, 'CHUNK_ENTRIES', chunk_entries)
        assert len(label_bce.row_chunks(301, 7)) == (1 if chunk_entries > 4 * 7 else 76)
        x = logits.clone().requires_grad_()
        result = losses.ghm_c(x, labels, valid, GHMState(torch.full((30,), 50.0)), 0.75, 'sum',
                              record_shares=record_shares)
        result.loss.backward()
        results[chunk_entries] = result, x.grad
    (whole, whole_grad), (chunked, chunked_grad) = results.values()
    assert torch.equal(whole.density.counts, chunked.density.counts)
    assert torch.equal(whole.density.state.acc_sum, chunked.density.state.acc_sum)
    assert torch.allclose(whole_grad, chunked_grad, rtol=1e-6, atol=1e-7)
    assert chunked.loss.item() == pytest.approx(whole.loss.item(), rel=1e-6)
    if record_shares:
        assert torch.allclose(whole.shares, chunked.shares, rtol=1e-6)
        assert 0 < chunked.shares[1] < chunked.shares[0] and 0 < chunked.shares[2] < chunked.shares[0]


def test_backward_keeps_one_byte_per_entry_not_the_weights(monkeypatch):
    """What the backward keeps besides the caller's tensors, for an input of several chunks: the region of
    each entry in one byte (for up to 255 regions) and the (bins + 1,) table, not a float32 weight per
    entry."""
    from ghm_mmdet.core import label_bce
    monkeypatch.setattr(label_bce, 'CHUNK_ENTRIES', 70)
    logits, labels, valid = problem()
    x = logits.clone().requires_grad_()
    loss, _ = ghm_c_loss(x, labels, valid, bins=30)
    nodes, node = [loss.grad_fn], None
    while nodes:  # the graph's node of the custom autograd Function
        node = nodes.pop()
        if type(node).__name__ == '_WeightedLabelBCEBackward':
            break
        nodes += [next_node for next_node, _ in node.next_functions if next_node is not None]
    assert type(node).__name__ == '_WeightedLabelBCEBackward'
    saved = node.saved_tensors
    full_size = [t for t in saved if t.shape == logits.shape and t.data_ptr() != x.data_ptr()]
    assert [t.dtype for t in full_size] == [torch.uint8]
    assert sorted(t.numel() for t in saved if t.dtype == torch.float32 and t.data_ptr() != x.data_ptr()) == [31]

"""Invariants of GHM, as hypothesis properties."""
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ghm_mmdet.core import GHMState, ghm_c_loss
from ghm_mmdet.core.density import (
    GHMC_LAST_EDGE,
    bin_counts,
    bin_indices,
    gather_weights,
    unit_region_edges,
    weight_table,
)
from ghm_mmdet.core.gradient_norm import sigmoid_gradient_norm
from ghm_mmdet.core.losses import ghm_c
from ghm_mmdet.models.losses import GHMC

shapes = st.tuples(st.integers(1, 60), st.integers(1, 6))


def random_problem(seed, shape):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64).float() * 4
    targets = (torch.rand(shape, generator=gen) > 0.7).float()
    valid = torch.rand(shape, generator=gen) > 0.3
    return logits, targets, valid


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), shape=shapes, bins=st.integers(1, 100))
def test_weights_of_valid_entries_sum_to_their_number_without_momentum(seed, shape, bins):
    logits, targets, valid = random_problem(seed, shape)
    result = ghm_c(logits, targets, valid, GHMState.zeros(bins), 0.0, 'none')
    density = result.density
    edges = unit_region_edges(bins, GHMC_LAST_EDGE)
    index = bin_indices(sigmoid_gradient_norm(logits, targets), edges, valid)
    weights = gather_weights(weight_table(density.beta), index)
    assert torch.allclose(weights[valid].sum().double(), valid.sum().double(), rtol=1e-5)
    assert (weights[~valid] == 0).all()
    # The per-entry loss is beta * BCE with those weights.
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    assert torch.allclose(result.loss, weights * bce, rtol=1e-6, atol=1e-12)
    # Eq. 6: sum_k beta_k * R_k = N, and the histogram counts the valid entries.
    assert torch.allclose((density.beta * density.counts).sum(), valid.sum().double())
    assert torch.equal(density.counts, bin_counts(index, bins))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), shape=shapes, labels_as_int=st.booleans())
def test_one_bin_is_the_masked_mean_bce(seed, shape, labels_as_int):
    logits, targets, valid = random_problem(seed, shape)
    expected = (F.binary_cross_entropy_with_logits(logits, targets, reduction='none')[valid].sum()
                / max(int(valid.sum()), 1))
    loss = GHMC(bins=1)(logits, targets, valid.float())
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-7)
    functional, _ = ghm_c_loss(logits, targets, valid, bins=1)
    assert torch.allclose(functional, expected, rtol=1e-5, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), num=st.integers(1, 80), bins=st.integers(1, 40),
       momentum=st.sampled_from([0.0, 0.75]))
def test_permuting_the_entries_changes_nothing(seed, num, bins, momentum):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, 5, generator=gen) * 3
    labels = torch.randint(0, 6, (num,), generator=gen)
    weights = (torch.rand(num, generator=gen) > 0.2).float()
    perm = torch.randperm(num, generator=gen)
    plain, permuted = GHMC(bins=bins, momentum=momentum), GHMC(bins=bins, momentum=momentum)
    for _ in range(2):
        a = plain(logits, labels, weights)
        b = permuted(logits[perm], labels[perm], weights[perm])
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    if momentum:
        assert torch.equal(plain.acc_sum, permuted.acc_sum)

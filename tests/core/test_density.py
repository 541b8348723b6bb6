"""Binning, counting, the moving averages and beta, checked against mmdet's own definitions and hand-derived
numbers."""
import math

import pytest
import torch
from mmdet.models.losses import ghm_loss as mmdet_ghm

from ghm_mmdet.core.density import (
    GHMC_LAST_EDGE,
    GHMR_LAST_EDGE,
    GHMState,
    bin_counts,
    bin_indices,
    edge_values,
    ema_density,
    fused_bin_counts,
    fused_weights,
    gather_weights,
    harmonize,
    harmonizing_weights_per_bin,
    mask_invalid,
    unit_region_edges,
    warm_start_density,
    weight_table,
)

F64 = torch.float64


def harmonizing_weights(index, bins, total, momentum=0.0, acc_sum=None, all_reduce=None):
    """Per-entry beta from region indices through the eager path's steps."""
    acc_sum = torch.zeros(bins) if acc_sum is None else acc_sum
    density = harmonize(bin_counts(index, bins), total, GHMState(acc_sum), momentum, all_reduce=all_reduce)
    return gather_weights(weight_table(density.beta), index), density


@pytest.mark.parametrize('bins', [1, 2, 3, 7, 10, 30, 99, 100])
def test_edges_are_bit_identical_to_mmdet_buffers(bins):
    assert torch.equal(unit_region_edges(bins, GHMC_LAST_EDGE), mmdet_ghm.GHMC(bins=bins).edges)
    assert torch.equal(unit_region_edges(bins, GHMR_LAST_EDGE), mmdet_ghm.GHMR(bins=bins).edges)


def reference_regions(g, edges):
    """mmdet's membership test, one bin at a time: region k iff edges[k] <= g < edges[k + 1]."""
    index = torch.full(g.shape, edges.numel() - 1, dtype=torch.int64)
    for k in range(edges.numel() - 1):
        index[(g >= edges[k]) & (g < edges[k + 1])] = k
    return index


def edge_probes(edges, seed):
    """Every edge, the float32 just below and just above it, 0, 1, NaN and random values."""
    probes = torch.cat([edges, torch.nextafter(edges, torch.tensor(-1.0)),
                        torch.nextafter(edges, torch.tensor(2.0)), torch.tensor([0.0, 1.0]),
                        torch.rand(200, generator=torch.Generator().manual_seed(seed))])
    return probes[(probes >= 0)]


@pytest.mark.parametrize('last_edge', [GHMC_LAST_EDGE, GHMR_LAST_EDGE])
@pytest.mark.parametrize('bins', list(range(1, 101)))
def test_edge_values_are_the_float32_edges(bins, last_edge):
    assert torch.equal(torch.tensor(edge_values(bins, last_edge)), unit_region_edges(bins, last_edge))


@pytest.mark.parametrize('bins', list(range(1, 101)))
def test_bin_indices_match_mmdet_at_every_edge(bins):
    edges = unit_region_edges(bins, GHMC_LAST_EDGE)
    probes = edge_probes(edges, bins)
    assert torch.equal(bin_indices(probes, edges).long(), reference_regions(probes, edges))


@pytest.mark.parametrize('bins', [1, 2, 3, 7, 10, 30, 64, 99, 100])
def test_fused_counts_and_weights_equal_the_eager_path_at_every_edge(bins):
    """The traced form (run eagerly here, compiled in test_compiled_fused_form_*) puts every entry
    in the same region as bucketize, including NaN, invalid and out-of-range entries."""
    edges = unit_region_edges(bins, GHMC_LAST_EDGE)
    probes = torch.cat([edge_probes(edges, bins), torch.tensor([float('nan'), float('inf'), 2.0])])
    valid = torch.rand(probes.shape, generator=torch.Generator().manual_seed(7)) > 0.2
    index = bin_indices(probes, edges, valid)
    counts = bin_counts(index, bins)
    masked = mask_invalid(probes, valid)
    assert torch.equal(fused_bin_counts(masked, edge_values(bins, GHMC_LAST_EDGE)), counts)
    beta = torch.arange(1, bins + 1, dtype=torch.float32)  # a distinct weight per region
    expected = gather_weights(weight_table(beta.double()), index)
    assert torch.equal(fused_weights(masked, beta, edge_values(bins, GHMC_LAST_EDGE)), expected)
    assert torch.equal(fused_bin_counts(probes, edge_values(bins, GHMC_LAST_EDGE)),
                       bin_counts(bin_indices(probes, edges), bins))


def test_compiled_fused_form_equals_the_eager_path_at_every_edge():
    bins = 30
    edges = unit_region_edges(bins, GHMC_LAST_EDGE)
    probes = torch.cat([edge_probes(edges, 3), torch.tensor([float('nan'), 2.0])])
    valid = torch.rand(probes.shape, generator=torch.Generator().manual_seed(3)) > 0.2
    beta = torch.arange(1, bins + 1, dtype=torch.float32)

    def fused(g, v, b):
        values = edge_values(bins, GHMC_LAST_EDGE)
        masked = mask_invalid(g, v)
        return fused_bin_counts(masked, values), fused_weights(masked, b, values)

    counts, weights = torch.compile(fused, fullgraph=True, dynamic=True)(probes, valid, beta)
    index = bin_indices(probes, edges, valid)
    assert torch.equal(counts, bin_counts(index, bins))
    assert torch.equal(weights, gather_weights(weight_table(beta.double()), index))


def test_bin_indices_send_invalid_nan_and_out_of_range_to_the_discarded_region():
    edges = unit_region_edges(10, GHMC_LAST_EDGE)
    g = torch.tensor([0.0, 0.05, 1.0, float('nan'), float('inf'), 2.0, 0.5])
    valid = torch.tensor([True, True, True, True, True, True, False])
    assert bin_indices(g, edges, valid).tolist() == [0, 0, 9, 10, 10, 10, 10]


def test_bin_counts_hand_example():
    index = torch.tensor([[0, 0, 2], [3, 2, 0]], dtype=torch.int32)  # 3 = discarded for bins=3
    assert bin_counts(index, 3).tolist() == [3.0, 0.0, 2.0]
    assert bin_counts(torch.zeros(0, dtype=torch.int32), 3).tolist() == [0.0, 0.0, 0.0]


def test_ema_updates_only_non_empty_regions():
    # S = 0.75 * S + 0.25 * R where R > 0: 0.75 * 0 + 0.25 * 2 = 0.5; the empty region keeps 4.
    new = ema_density(torch.tensor([2.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 4.0]), 0.75)
    assert new.dtype == torch.float32
    assert new.tolist() == [0.5, 4.0]


def test_beta_hand_example():
    # counts [3, 0, 1], N = 4, two non-empty regions: beta = 4 / (3 * 2), 0, 4 / (1 * 2); discarded 0.
    counts = torch.tensor([3.0, 0.0, 1.0], dtype=torch.float64)
    beta = harmonizing_weights_per_bin(counts, counts, torch.tensor(4.0, dtype=torch.float64))
    assert beta.tolist() == pytest.approx([4 / 6, 0.0, 2.0])
    assert weight_table(beta).tolist() == pytest.approx([4 / 6, 0.0, 2.0, 0.0])


def test_harmonizing_weights_with_momentum_hand_example():
    # Regions of g: [0, 0, 0, 2] with bins=3; EMA 0.5 from zeros: S = [1.5, 0, 0.5], n = 2, N = 4.
    index = torch.tensor([0, 0, 0, 2], dtype=torch.int32)
    weights, density = harmonizing_weights(index, 3, torch.tensor(4.0, dtype=F64), momentum=0.5,
                                           acc_sum=torch.zeros(3))
    assert density.state.acc_sum.tolist() == [1.5, 0.0, 0.5]
    assert weights.tolist() == pytest.approx([4 / 3, 4 / 3, 4 / 3, 4.0])
    assert density.total.item() == 4.0
    assert density.density.tolist() == [1.5, 0.0, 0.5]


def test_all_reduce_callback_sees_counts_and_totals():
    seen = []

    def double(stats):  # a fake two-worker sum where both workers hold the same data
        seen.append(stats.clone())
        stats.mul_(2)

    index = torch.tensor([0, 1, 1], dtype=torch.int32)
    weights, density = harmonizing_weights(index, 2, torch.tensor(3.0, dtype=F64), all_reduce=double)
    assert seen[0].tolist() == [1.0, 2.0, 3.0, 3.0]  # counts, num_valid, N
    assert density.total.item() == 6.0
    # beta = N / (count * n) with the doubled statistics: 6 / (2 * 2) and 6 / (4 * 2).
    assert weights.tolist() == pytest.approx([1.5, 0.75, 0.75])


def test_warm_start_first_call_and_floor():
    counts = torch.tensor([2.0, 0.0, 2.0, 0.0], dtype=torch.float64)
    num_valid = torch.tensor(4.0, dtype=torch.float64)
    density, acc_sum, floor = warm_start_density(counts, num_valid, torch.zeros(4), torch.zeros(()),
                                                 0.75)
    # start = 4 / 4 = 1: 0.75 + 0.25 * 2 = 1.25 where counted, 0.75 elsewhere (stored: floored at 1).
    assert density.tolist() == [1.25, 0.75, 1.25, 0.75]
    assert acc_sum.tolist() == [1.25, 1.0, 1.25, 1.0]
    assert floor.item() == 1.0
    # A call with no valid entry changes nothing.
    _, same_acc, same_floor = warm_start_density(torch.zeros(4, dtype=torch.float64),
                                                 torch.tensor(0.0, dtype=torch.float64), acc_sum,
                                                 floor, 0.75)
    assert torch.equal(same_acc, acc_sum) and torch.equal(same_floor, floor)


def test_nothing_counted_gives_zero_weights_and_no_nan():
    index = torch.full((5,), 3, dtype=torch.int32)
    weights, density = harmonizing_weights(index, 3, torch.tensor(0.0, dtype=F64), momentum=0.9,
                                           acc_sum=torch.tensor([1.0, 2.0, 3.0]))
    assert weights.tolist() == [0.0] * 5
    assert density.state.acc_sum.tolist() == [1.0, 2.0, 3.0]
    assert math.isfinite(density.total.item())


@pytest.mark.parametrize('momentum', [0.0, 0.75])
def test_warm_start_beta_of_a_region_without_entries_is_zero(momentum):
    """No entry is weighted by an empty region's beta; N / (1e-12 * bins) there (8e13) would only mislead the
    statistics (max_beta, the fp16 warning, the histograms)."""
    counts = torch.zeros(10, dtype=F64)
    counts[[0, 3, 9]] = torch.tensor([600.0, 150.0, 50.0], dtype=F64)
    density = harmonize(counts, counts.sum(), GHMState.zeros(10, warm_start=True), momentum)
    # First call: S_k = m * 800 / 10 + (1 - m) * R_k; beta_k = 800 / (S_k * 10) where R_k > 0.
    start = 80.0
    expected = [800 / ((momentum * start + (1 - momentum) * float(c)) * 10) if c > 0 else 0.0 for c in counts]
    assert density.beta.tolist() == pytest.approx(expected, rel=1e-12)

"""Gradient density over unit regions and the harmonizing parameter beta.

Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181), Sec. 3.
The gradient-norm axis [0, 1] is cut into ``bins`` unit regions of width ``eps = 1 / bins`` (Sec. 3.3);
the density of a region is the number of valid entries whose gradient norm falls in it, optionally as an
exponential moving average over calls (Eq. 9); beta = N / GD(g) (Eq. 6), divided by the number of
non-empty regions as in the reference implementation. :func:`harmonize` takes one call's counts and the
moving-average state (:class:`GHMState`) to beta and the new state.

Design: no ``.item()``, no run-time loop over bins and no data-dependent shapes, so nothing here
synchronises host and device. Two forms of the binning share one definition of the regions
(:func:`unit_region_edges`):

* eager: ``bucketize`` then ``bincount`` (:func:`bin_indices`, :func:`bin_counts`), the fastest kernels
  when each op runs on its own;
* under ``torch.compile``: comparisons against the fixed edges, unrolled while tracing
  (:func:`fused_bin_counts`, :func:`fused_weights`), which Inductor fuses into one pass over the input.

:func:`bin_regions` and :func:`region_weights` pick the form from the type of the edges.

Both compare the float32 gradient norm with the same float32 edges, so they put every entry in the same
region (tested at every edge +-1 ulp). Per-bin arithmetic (a handful of numbers) runs in float64 so that
counts above 2**24 stay exact; every full-size tensor stays float32 or integer.
"""
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

#: Upper edge of the last region for GHM-C: a little above 1 so that ``g == 1`` falls in the last bin.
GHMC_LAST_EDGE = 1.0 + 1e-6
#: Upper edge of the last region for GHM-R: ASL1's gradient norm is below 1, so any large value works.
GHMR_LAST_EDGE = 1e3

#: Unit-region edges as the eager routes bin with them (a tensor) or as the traced route does (floats).
Edges = Union[Tensor, Tuple[float, ...]]
#: Sums a float64 tensor over workers, in place or returning the sum (e.g. ``mmengine.dist.all_reduce``).
AllReduce = Callable[[Tensor], Optional[Tensor]]


def unit_region_edges(bins: int, last_edge: float, device=None) -> Tensor:
    """Edges ``e_0 .. e_bins`` of the unit regions: ``e_k = float32(k) / bins``, the last one replaced.

    Region ``k`` holds ``e_k <= g < e_(k+1)``. The values are bit-identical to the ``edges`` buffer of
    mmdet's ``GHMC`` (``last_edge = 1 + 1e-6``) and ``GHMR`` (``last_edge = 1e3``).

    Returns:
        ``(bins + 1,)`` float32 tensor.
    """
    edges = torch.arange(bins + 1, device=device).float() / bins
    edges[-1] = last_edge
    return edges


def edge_values(bins: int, last_edge: float) -> Tuple[float, ...]:
    """The edges of :func:`unit_region_edges` as Python floats (constants for the traced comparisons).

    ``k / bins`` rounded to float32, bit-identical to ``float32(k) / bins`` for every ``bins`` a loss takes
    (the exact quotient is never a float32 rounding tie, so rounding through float64 changes nothing).
    Plain arithmetic, so that ``torch.compile`` folds it into constants.
    """
    return tuple(_round_to_float32(k / bins) for k in range(bins)) + (_round_to_float32(last_edge),)


def _round_to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (normal range), by Veltkamp's split of the float64.

    ``c - (c - value)`` with ``c = value * (2**29 + 1)`` keeps the 24 leading bits of the 53-bit mantissa,
    rounded to nearest (Dekker 1971): arithmetic alone, which every supported torch's Dynamo folds into a
    constant (torch 2.0 cannot trace ``math.frexp``).
    """
    scaled = value * float(2**29 + 1)
    return scaled - (scaled - value)


def bin_indices(gradient_norm: Tensor, edges: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Unit region of each entry, with ``bins`` (an extra, discarded region) for entries not counted.

    An entry is counted when it is valid and ``e_0 <= g < e_bins``. NaN and infinite gradient norms
    (from NaN or infinite inputs) go to the discarded region, so they can never reach the EMA state.

    Args:
        gradient_norm: ``(...)`` float32 gradient norms ``g`` (>= 0).
        edges: ``(bins + 1,)`` float32 sorted edges from :func:`unit_region_edges`.
        valid: optional ``(...)`` bool mask, same shape as ``gradient_norm``.

    Returns:
        ``(...)`` int32 tensor in ``[0, bins]``: exactly the ``k`` with ``edges[k] <= g < edges[k+1]``,
        as mmdet's per-bin comparisons, since ``bucketize`` compares with the float32 edges themselves.
    """
    # right=True: e_k <= g < e_(k+1) -> k; g >= e_bins, +inf and NaN -> bins (the discarded region).
    # (Measured alternatives: floor(g * bins) corrected against gathered edges is exact too, but
    # slower in eager mode and, under Inductor, its indirect loads stop vectorisation.)
    # A view of permuted logits (RetinaHead with one anchor) is not contiguous: bucketize would copy it anyway.
    index = torch.bucketize(gradient_norm.contiguous(), edges[1:], right=True, out_int32=True)
    if valid is not None:
        index.masked_fill_(~valid, edges.numel() - 1)
    return index


def bin_counts(index: Tensor, bins: int) -> Tensor:
    """Number of counted entries in each unit region, ``R_k`` in the paper.

    Args:
        index: int32 or int64 tensor from :func:`bin_indices`, values in ``[0, bins]``.
        bins: number of regions.

    Returns:
        ``(bins,)`` float64 tensor of counts (the discarded region ``bins`` is dropped).
    """
    flat = index.reshape(-1)
    if flat.device.type == 'cpu':
        # bincount's output size depends on max(index), which only an accelerator pays for (a host
        # sync); on the CPU it is the fastest count (32M entries into one hot bin serialise index_add_).
        counts = torch.bincount(flat, minlength=bins + 1)
    else:
        # A fixed-size accumulator has a static shape: no device-to-host sync.
        ones = torch.ones((), dtype=torch.int64, device=flat.device).expand(flat.numel())
        counts = torch.zeros(bins + 1, dtype=torch.int64, device=flat.device).index_add_(0, flat, ones)
    return counts[:bins].double()


def fused_bin_counts(gradient_norm: Tensor, edges: Sequence[float]) -> Tensor:
    """:func:`bin_counts` of :func:`bin_indices` in one pass: ``R_k = C_k - C_(k+1)``, where
    ``C_k = #{g >= e_k}``.

    The ``bins + 1`` comparisons are unrolled while tracing; under ``torch.compile`` they become one fused
    reduction over ``gradient_norm`` instead of a ``bucketize`` and a ``bincount`` kernel. Entries that are
    not counted never change a difference: invalid ones (``+inf`` from :func:`mask_invalid`), like any
    ``g >= e_bins``, are in every ``C_k``; NaN fails every comparison. (Masking the norm once costs one
    select per entry; masking each of the ``bins + 1`` comparisons cost a quarter of the counting time.)

    Args:
        gradient_norm: ``(...)`` float32 gradient norms, from :func:`mask_invalid`.
        edges: the ``bins + 1`` edges from :func:`edge_values`.

    Returns:
        ``(bins,)`` float64 counts.
    """
    # int32 accumulators vectorise twice as wide as int64 ones (measured: half the time at RetinaNet scale).
    dtype = torch.int32 if gradient_norm.numel() < 2**31 else torch.int64
    at_least = torch.stack([(gradient_norm >= edge).sum(dtype=dtype) for edge in edges]).double()
    return at_least[:-1] - at_least[1:]


def fused_weights(gradient_norm: Tensor, beta: Tensor, edges: Sequence[float]) -> Tensor:
    """:func:`gather_weights` of :func:`bin_indices` as a chain of selects over the fixed edges.

    Args:
        gradient_norm: ``(...)`` float32 gradient norms, from :func:`mask_invalid`.
        beta: ``(bins,)`` float32 weight of each region.
        edges: the ``bins + 1`` edges from :func:`edge_values`.

    Returns:
        ``(...)`` float32 ``beta`` of each entry's region, 0 for entries not counted.
    """
    weights = beta[0]
    for k in range(1, len(edges) - 1):
        weights = torch.where(gradient_norm >= edges[k], beta[k], weights)
    counted = (gradient_norm >= edges[0]) & (gradient_norm < edges[-1])
    return torch.where(counted, weights, 0.0)


def mask_invalid(gradient_norm: Tensor, valid: Optional[Tensor]) -> Tensor:
    """``gradient_norm`` with ``+inf`` where ``valid`` (broadcastable bool, or ``None``: all) is False: above
    every edge, so never counted."""
    return gradient_norm if valid is None else torch.where(valid, gradient_norm, float('inf'))


def bin_regions(gradient_norm: Tensor, valid: Optional[Tensor], edges: Edges) -> Tuple[Tensor, Tensor]:
    """``(counts, regions)``: the ``(bins,)`` float64 counts ``R_k`` and what :func:`region_weights` needs to
    give every entry its region's beta; traced (``edges`` as floats) or eager (as a tensor).

    ``regions`` is the int32 region index of each entry (eager) or the gradient norm with invalid entries at
    ``+inf`` (traced), of the shape of ``gradient_norm``.
    """
    if isinstance(edges, tuple):
        masked = mask_invalid(gradient_norm, valid)
        return fused_bin_counts(masked, edges), masked
    index = bin_indices(gradient_norm, edges, valid)
    return bin_counts(index, edges.numel() - 1), index


def region_weights(regions: Tensor, beta: Tensor, edges: Edges) -> Tensor:
    """The float32 beta of every entry from :func:`bin_regions`' ``regions`` (0 for entries not counted)."""
    if isinstance(edges, tuple):
        return fused_weights(regions, beta.float(), edges)
    return gather_weights(weight_table(beta), regions)


def weight_table(beta: Tensor) -> Tensor:
    """``(bins + 1,)`` float32 lookup table for :func:`gather_weights`: beta, then 0 for the discarded
    region ``bins``."""
    return torch.cat([beta, beta.new_zeros(1)]).float()


def gather_weights(table: Tensor, index: Tensor) -> Tensor:
    """Per-entry weight from a per-region table: ``table[index]``, same shape as ``index``, float32."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


# --------------------------------------------------------------------------------------------------
# From counts to beta: the moving averages and Eq. 6
# --------------------------------------------------------------------------------------------------


class GHMState(NamedTuple):
    """Moving-average state of one GHM loss: passed to the core and returned by it, never modified in place.

    Attributes:
        acc_sum: ``(bins,)`` float32 moving-average density of each unit region (zeros before the first call).
        floor: ``None`` for mmdet's moving average; with the seed's warm start, the float32 scalar starting
            value ``num_valid / bins`` of the first call (0 before it).
    """
    acc_sum: Tensor
    floor: Optional[Tensor] = None

    @classmethod
    def zeros(cls, bins: int, device=None, warm_start: bool = False) -> 'GHMState':
        return cls(torch.zeros(bins, device=device), torch.zeros((), device=device) if warm_start else None)


class Density(NamedTuple):
    """Gradient density of one call and what follows from it (all detached, no host sync to build).

    Attributes:
        counts: ``(bins,)`` float64 ``R_k``, the entries of this call in each unit region (summed over
            workers with ``all_reduce``).
        total: float64 scalar ``N`` of Eq. 6/8, at least 1.
        num_valid: float64 scalar, the number of valid entries.
        density: ``(bins,)`` float64 ``GD`` per region: the counts, or the moving average.
        beta: ``(bins,)`` float64 harmonizing parameter per region, 0 where the region is empty.
        state: the :class:`GHMState` to keep for the next call.
    """
    counts: Tensor
    total: Tensor
    num_valid: Tensor
    density: Tensor
    beta: Tensor
    state: GHMState


def harmonize(counts: Tensor, num_valid: Tensor, state: GHMState, momentum: float,
              total: Optional[Tensor] = None, all_reduce: Optional[AllReduce] = None) -> Density:
    """Beta per unit region from this call's counts (Eq. 6-9 of arXiv:1811.05181).

    mmdet's moving average (``state.floor is None``): only non-empty regions are updated,
    ``S_k <- m * S_k + (1 - m) * R_k``, and ``beta_k = N / (GD_k * n)`` with ``n`` the non-empty regions;
    with ``momentum == 0``, ``GD_k = R_k`` (exact in float64), so the weights of the valid entries sum to
    ``N``. The seed's warm start (a ``floor``, :func:`ghm_mmdet.core.warm_start_ghm_weights`): every region
    is updated and ``beta_k = N / (GD_k * bins)``.

    Args:
        counts: ``(bins,)`` float64 counts of this call.
        num_valid: scalar, the number of valid entries.
        state: the state returned by the previous call (:meth:`GHMState.zeros` before the first).
        momentum: in [0, 1).
        total: scalar ``N`` before clamping to at least 1; ``None``: ``num_valid`` (every valid entry has
            weight 1, as in GHM-C).
        all_reduce: optional function summing a float64 tensor over workers (in place, or returning the
            sum); with it the density and ``N`` are those of the whole distributed batch.

    Returns:
        :class:`Density`, with the new state.
    """
    bins = counts.numel()
    num_valid = num_valid.double()
    total = num_valid if total is None else total.double()
    if all_reduce is not None:
        stats = torch.cat([counts, num_valid.view(1), total.view(1)])
        reduced = all_reduce(stats)
        stats = stats if reduced is None else reduced
        counts, num_valid, total = stats[:bins], stats[bins], stats[bins + 1]
    total = total.clamp(min=1.0)
    if state.floor is None:
        acc_sum = ema_density(counts, state.acc_sum, momentum)
        density, state = (counts if momentum == 0 else acc_sum.double()), GHMState(acc_sum)
        beta = harmonizing_weights_per_bin(counts, density, total)
    else:
        density, *new_state = warm_start_density(counts, num_valid, state.acc_sum, state.floor, momentum)
        state = GHMState(*new_state)
        beta = harmonizing_weights_per_bin(counts, density, total, regions=bins)
    return Density(counts, total, num_valid, density, beta, state)


def ema_density(counts: Tensor, acc_sum: Tensor, momentum: float) -> Tensor:
    """Moving-average gradient density of mmdet's GHM (Eq. 9, without warm start).

    Only non-empty regions are updated, ``S_k <- momentum * S_k + (1 - momentum) * R_k``; empty ones keep
    their value. With ``momentum == 0`` this is just ``R_k``.

    Args:
        counts: ``(bins,)`` float64 counts from :func:`bin_counts`.
        acc_sum: ``(bins,)`` float32 running state (all zeros before the first call).
        momentum: in [0, 1).

    Returns:
        ``(bins,)`` float32 new state; the caller stores it.
    """
    updated = momentum * acc_sum.double() + (1.0 - momentum) * counts
    return torch.where(counts > 0, updated, acc_sum.double()).float()


def warm_start_density(counts: Tensor, num_valid: Tensor, acc_sum: Tensor, floor: Tensor,
                       momentum: float) -> Tuple[Tensor, Tensor, Tensor]:
    """The warm-started moving average of the TensorFlow ``get_ghm_weight()`` (the project's seed).

    On the first call (``floor == 0``) every region starts at ``num_valid / bins`` and that value
    becomes the floor. Every region is updated on every call, empty ones included:
    ``S_k <- momentum * S_k + (1 - momentum) * R_k``; the weights use this value, and the stored state
    never falls below the floor. A call with no valid entry changes nothing.

    Args:
        counts: ``(bins,)`` float64 counts of this call.
        num_valid: scalar tensor, number of valid entries of this call.
        acc_sum: ``(bins,)`` float32 state.
        floor: scalar float32 state, 0 before the first call.
        momentum: in [0, 1) (the seed's ``alpha``).

    Returns:
        ``(density, new_acc_sum, new_floor)``: float64 density used for the weights, then the float32
        state to store.
    """
    bins = counts.numel()
    start = num_valid.double() / bins
    started = floor > 0
    previous = torch.where(started, acc_sum.double(), start)
    new_floor = torch.where(started, floor.double(), start)
    density = momentum * previous + (1.0 - momentum) * counts
    has_valid = num_valid > 0
    new_acc_sum = torch.where(has_valid, torch.maximum(density, new_floor), acc_sum.double())
    new_floor = torch.where(has_valid, new_floor, floor.double())
    return density, new_acc_sum.float(), new_floor.float()


def harmonizing_weights_per_bin(counts: Tensor, density: Tensor, total: Tensor,
                                regions: Optional[int] = None) -> Tensor:
    """Harmonizing parameter beta of each region, ``N / (GD * n)`` (Eq. 6 with mmdet's normalisation).

    ``GD`` is the (moving-average) density of the region and ``n`` the number of non-empty regions in this
    call, so that with ``momentum == 0`` the weights of the valid entries sum to ``N`` (the seed's warm
    start passes ``regions=bins``). A region with no entry in this call has beta 0: no entry is weighted by
    it, and the statistics (largest beta, histograms) stay those of the weights used.

    Args:
        counts: ``(bins,)`` float64 counts of this call, deciding which regions are non-empty.
        density: ``(bins,)`` density per region (``counts`` itself, or the moving average).
        total: scalar tensor ``N`` (at least 1).
        regions: ``n``; ``None``: the number of non-empty regions.

    Returns:
        ``(bins,)`` float64 beta per region, 0 for empty regions.
    """
    non_empty = counts > 0
    regions = non_empty.sum().clamp(min=1).double() if regions is None else regions
    return torch.where(non_empty, total.double() / (density.double() * regions), 0.0)

"""One entry point from gradient norms to harmonizing weights, shared by GHM-C, GHM-R and the seed API."""
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .density import (bin_counts, bin_indices, ema_density, gather_weights,
                      harmonizing_weights_per_bin, num_valid_and_total, warm_start_density,
                      warm_start_weights_per_bin)


class HarmonizedWeights(NamedTuple):
    """Result of :func:`harmonizing_weights`.

    Attributes:
        weights: ``(...)`` float32 beta of each entry, 0 for entries that are not counted.
        total: float64 scalar ``N`` used in beta (at least 1; summed over workers with ``all_reduce``).
        acc_sum: ``(bins,)`` float32 new moving-average state, or ``None`` without one.
        floor: float32 scalar new warm-start floor, or ``None`` without warm start.
    """
    weights: Tensor
    total: Tensor
    acc_sum: Optional[Tensor]
    floor: Optional[Tensor]


def harmonizing_weights(gradient_norm: Tensor,
                        valid: Tensor,
                        edges: Tensor,
                        label_weight: Optional[Tensor] = None,
                        momentum: float = 0.0,
                        acc_sum: Optional[Tensor] = None,
                        floor: Optional[Tensor] = None,
                        all_reduce: Optional[Callable[[Tensor], Tensor]] = None) -> HarmonizedWeights:
    """Gradient density harmonizing parameter beta of every entry (Eq. 6-9 of arXiv:1811.05181).

    Three modes, chosen by the state passed in:

    * ``acc_sum is None``: density of this call only (``momentum`` must be 0);
    * ``acc_sum`` given, ``floor is None``: mmdet's moving average, only non-empty regions updated,
      ``beta = N / (S_k * n_non_empty)``;
    * ``acc_sum`` and ``floor`` given: the seed's warm-started average, ``beta = N / (S_k * bins)``.

    The state is returned, never modified in place, so the caller decides where it lives.

    Args:
        gradient_norm: ``(...)`` float32 gradient norms in [0, 1].
        valid: ``(...)`` bool mask of entries that take part (label weight > 0).
        edges: ``(bins + 1,)`` float32 edges from :func:`unit_region_edges`.
        label_weight: optional ``(...)`` weights whose sum is ``N`` (GHM-R); else ``N`` counts ``valid``.
        momentum: EMA parameter in [0, 1).
        acc_sum: ``(bins,)`` float32 EMA state, or ``None``.
        floor: float32 scalar warm-start floor (0 before the first call), or ``None``.
        all_reduce: optional function that sums a float64 tensor over workers, in place or not; with it
            the density and ``N`` are those of the whole distributed batch.

    Returns:
        :class:`HarmonizedWeights`.
    """
    bins = edges.numel() - 1
    index = bin_indices(gradient_norm, edges, valid)
    counts = bin_counts(index, bins)
    num_valid, total = num_valid_and_total(valid, label_weight)
    if all_reduce is not None:
        stats = torch.cat([counts, num_valid.view(1), total.view(1)])
        reduced = all_reduce(stats)
        stats = stats if reduced is None else reduced
        counts, num_valid, total = stats[:bins], stats[bins], stats[bins + 1]
    total = total.clamp(min=1.0)

    if floor is not None:
        density, acc_sum, floor = warm_start_density(counts, num_valid, acc_sum, floor, momentum)
        table = warm_start_weights_per_bin(density, total)
    elif acc_sum is not None:
        acc_sum = ema_density(counts, acc_sum, momentum)
        table = harmonizing_weights_per_bin(counts, acc_sum, total)
    else:
        table = harmonizing_weights_per_bin(counts, counts, total)
    return HarmonizedWeights(gather_weights(table, index), total, acc_sum, floor)

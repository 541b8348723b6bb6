"""One entry point from region indices to harmonizing weights, shared by GHM-C, GHM-R and the seed API."""
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .density import (bin_counts, ema_density, gather_weights, harmonizing_weights_per_bin,
                      warm_start_density, warm_start_weights_per_bin)


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


def harmonizing_weights(index: Tensor,
                        bins: int,
                        total: Tensor,
                        num_valid: Optional[Tensor] = None,
                        momentum: float = 0.0,
                        acc_sum: Optional[Tensor] = None,
                        floor: Optional[Tensor] = None,
                        all_reduce: Optional[Callable[[Tensor], Optional[Tensor]]] = None,
                        out: Optional[Tensor] = None) -> HarmonizedWeights:
    """Gradient density harmonizing parameter beta of every entry (Eq. 6-9 of arXiv:1811.05181).

    Three modes, chosen by the state passed in:

    * ``acc_sum is None``: density of this call only;
    * ``acc_sum`` given, ``floor is None``: mmdet's moving average, only non-empty regions updated,
      ``beta = N / (S_k * n_non_empty)``;
    * ``acc_sum`` and ``floor`` given: the seed's warm-started average, ``beta = N / (S_k * bins)``.

    The state is returned, never modified in place, so the caller decides where it lives.

    Args:
        index: ``(...)`` int region of each entry from :func:`bin_indices` (``bins`` = not counted).
        bins: number of unit regions.
        total: float64 scalar ``N`` before clamping: the number of valid entries (GHM-C) or the sum of
            the label weights (GHM-R). Clamped to at least 1 here, as in mmdet.
        num_valid: float64 scalar number of valid entries (warm start only); defaults to ``total``.
        momentum: EMA parameter in [0, 1).
        acc_sum: ``(bins,)`` float32 EMA state, or ``None``.
        floor: float32 scalar warm-start floor (0 before the first call), or ``None``.
        all_reduce: optional function summing a float64 tensor over workers (in place, or returning
            the sum); with it the density and ``N`` are those of the whole distributed batch.
        out: optional contiguous float32 tensor of ``index``'s size to receive the weights.

    Returns:
        :class:`HarmonizedWeights`.
    """
    counts = bin_counts(index, bins)
    total = total.double()
    num_valid = total if num_valid is None else num_valid.double()
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
    return HarmonizedWeights(gather_weights(table, index, out), total, acc_sum, floor)

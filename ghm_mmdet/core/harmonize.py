"""From region counts to the harmonizing parameter beta: the step GHM-C, GHM-R and the seed API share."""
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .density import (ema_density, harmonizing_weights_per_bin, warm_start_density,
                      warm_start_weights_per_bin)

AllReduce = Callable[[Tensor], Optional[Tensor]]


class Density(NamedTuple):
    """Gradient density of one call and what follows from it (all detached, no host sync to build).

    Attributes:
        counts: ``(bins,)`` float64 ``R_k``, the entries of this call in each unit region (summed over
            workers with ``all_reduce``).
        total: float64 scalar ``N`` of Eq. 6/8, at least 1.
        num_valid: float64 scalar, the number of valid entries.
        density: ``(bins,)`` float64 ``GD`` per region: the counts, or the moving average.
        beta: ``(bins,)`` float64 harmonizing parameter per region (0 where the region is empty).
        acc_sum: ``(bins,)`` float32 moving-average state to keep for the next call.
        floor: float32 scalar warm-start floor to keep, or ``None`` without warm start.
    """
    counts: Tensor
    total: Tensor
    num_valid: Tensor
    density: Tensor
    beta: Tensor
    acc_sum: Tensor
    floor: Optional[Tensor]


def harmonize(counts: Tensor, total: Tensor, acc_sum: Tensor, momentum: float, *,
              num_valid: Optional[Tensor] = None, floor: Optional[Tensor] = None,
              all_reduce: Optional[AllReduce] = None) -> Density:
    """Beta per unit region from this call's counts (Eq. 6-9 of arXiv:1811.05181).

    mmdet's moving average: only non-empty regions are updated, ``S_k <- m * S_k + (1 - m) * R_k``, and
    ``beta_k = N / (GD_k * n)`` with ``n`` the non-empty regions; with ``momentum == 0``, ``GD_k = R_k``
    (exact in float64), so the weights of the valid entries sum to ``N``. With ``floor`` (the seed's
    warm start, :func:`ghm_mmdet.core.warm_start_ghm_weights`): every region is updated and
    ``beta_k = N / (S_k * bins)``.

    Args:
        counts: ``(bins,)`` float64 counts of this call.
        total: float64 scalar ``N`` before clamping to at least 1.
        acc_sum: ``(bins,)`` float32 state (zeros before the first call).
        momentum: in [0, 1).
        num_valid: float64 scalar number of valid entries; ``None``: ``total`` (every valid entry has
            weight 1, as in GHM-C).
        floor: float32 scalar warm-start state, or ``None`` for mmdet's moving average.
        all_reduce: optional function summing a float64 tensor over workers (in place, or returning the
            sum); with it the density and ``N`` are those of the whole distributed batch.

    Returns:
        :class:`Density`; the state is returned, never modified in place.
    """
    bins = counts.numel()
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
        beta = warm_start_weights_per_bin(density, total)
    else:
        acc_sum = ema_density(counts, acc_sum, momentum)
        density = counts if momentum == 0 else acc_sum.double()
        beta = harmonizing_weights_per_bin(counts, density, total)
    return Density(counts, total, num_valid, density, beta, acc_sum, floor)

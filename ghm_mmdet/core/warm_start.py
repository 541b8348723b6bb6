"""The warm-started GHM weights of the TensorFlow ``get_ghm_weight()`` the project grew out of."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .checks import check_bins, check_floating, check_momentum, check_same_shape, check_state
from .density import GHMC_LAST_EDGE, GHMState, bin_regions, harmonize, region_weights, unit_region_edges
from .gradient_norm import bce_gradient


# The seed's names (get_ghm_weight(predict, target, valid_mask)): it takes probabilities, not mmdet's logits.
def warm_start_ghm_weights(probs: Tensor,
                           targets: Tensor,
                           valid_mask: Tensor,
                           state: Optional[GHMState] = None,
                           bins: int = 10,
                           momentum: float = 0.75) -> Tuple[Tensor, GHMState]:
    """Gradient harmonizing weights from probabilities, with a warm-started moving average.

    Functional port of ``get_ghm_weight(predict, target, valid_mask, bins, alpha)`` from
    peteryuX/tensorflow-GHM-loss. It differs from mmdet's GHM moving average (``GHMC(momentum=...)``):

    * on the first call every region's statistic starts at ``num_valid / bins`` (the TF code uses the
      static tensor size; here only valid entries count, the same when all are valid);
    * every region is updated on every call, ``s = momentum * s + (1 - momentum) * count``, empty ones too;
    * the stored statistic never falls below its starting value;
    * ``weight = N / (s * bins)``, with no division by the number of non-empty regions.

    Args:
        probs: ``(...)`` floating probabilities in [0, 1] (after sigmoid, not logits).
        targets: ``(...)`` targets in {0, 1}, same shape.
        valid_mask: ``(...)`` mask, same shape; an entry takes part when ``valid_mask > 0``.
        state: state returned by the previous call, or ``None`` for the first call.
        bins: number of unit regions, an int >= 1.
        momentum: the seed's ``alpha``, in [0, 1).

    Returns:
        ``(weights, new_state)``: ``(...)`` float32 weights (0 where not valid) and the state to pass
        to the next call. Nothing is modified in place.

    Example (the seed's toy demo)::

        >>> w, s = warm_start_ghm_weights(torch.tensor([1., 0., .5, 0.]), torch.tensor([1., 0., 0., 1.]),
        ...                               torch.ones(4))
        >>> w
        tensor([0.5000, 0.5000, 0.7273, 0.7273])
    """
    bins, momentum = check_bins(bins), check_momentum(momentum)
    check_floating(probs, 'probs')
    check_same_shape(targets, 'targets', probs, 'probs')
    check_same_shape(valid_mask, 'valid_mask', probs, 'probs')
    if state is None:
        state = GHMState.zeros(bins, probs.device, warm_start=True)
    else:
        state = check_state(state.acc_sum, bins, probs.device, state.floor, name='state.acc_sum')
    edges = unit_region_edges(bins, GHMC_LAST_EDGE, device=probs.device)
    valid = valid_mask > 0
    counts, regions = bin_regions(bce_gradient(probs.detach().float(), targets.float()).abs_(), valid, edges)
    density = harmonize(counts, valid.sum(dtype=torch.float64), state, momentum)
    return region_weights(regions, density.beta, edges), density.state

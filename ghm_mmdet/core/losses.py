"""GHM-C and GHM-R as plain functions: one call per loss, the moving-average state passed in and returned.

Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181). With the same
arguments, call after call, the values equal mmdet 3.3.0's ``GHMC``/``GHMR`` modules (which
:mod:`ghm_mmdet.models` wraps around these functions). The arguments are named as in mmdet's loss contract:
``pred``, ``target`` and ``weight`` (an entry takes part where ``weight > 0``).

Each public function checks its arguments once (:mod:`.checks`), then :func:`ghm_c`, :func:`ghm_c_softmax`
or :func:`ghm_r` runs the route :func:`~.routes.choose_route` picks. Every route takes the same steps: the
gradient norm of each entry (:mod:`.gradient_norm`), its unit region and the counts (:mod:`.density`),
:func:`~.density.harmonize` from the counts and the :class:`~.density.GHMState` to beta and the new state,
then the loss weighted by beta.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import checks
from .density import (
    GHMC_LAST_EDGE,
    GHMR_LAST_EDGE,
    AllReduce,
    Density,
    Edges,
    GHMState,
    bin_regions,
    edge_values,
    harmonize,
    region_weights,
    unit_region_edges,
)
from .gradient_norm import asl1_gradient_norm, asl1_loss, bce_gradient, sigmoid_gradient_norm, softmax_gradient_norm
from .label_bce import label_bin_counts, label_weighted_bce, loss_shares
from .routes import Route, choose_route


class GHMResult(NamedTuple):
    """What one GHM loss call computed (see :func:`ghm_c_loss` for the user-facing pair).

    Attributes:
        loss: the loss, reduced as asked (float32).
        density: :class:`~ghm_mmdet.core.density.Density`: counts, ``N``, beta per region and the new state.
        shares: ``None``, or with ``record_shares`` the ``(3,)`` float64 sums of ``beta_i * loss_i`` over
            all counted entries, over those with ``g < 0.1`` and over those with ``g > 0.9``.
    """
    loss: Tensor
    density: Density
    shares: Optional[Tensor] = None


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def ghm_c_loss(pred: Tensor, target, weight: Optional[Tensor] = None,
               acc_sum: Optional[Tensor] = None, *, bins: int = 10, momentum: float = 0.0,
               reduction: str = 'mean', activated: bool = False) -> Tuple[Tensor, Tensor]:
    """GHM-C: sigmoid binary cross-entropy weighted by the gradient density harmonizing parameter.

    ``L_GHM-C = (1 / N) * sum_i beta_i * L_CE(p_i, p*_i)`` (Eq. 8 of arXiv:1811.05181) over the ``N`` valid
    entries, with the gradient norm ``g = |sigmoid(x) - p*|`` (Eq. 3), the gradient density ``GD(g)``
    counted in ``bins`` unit regions of width ``1 / bins`` (Eq. 4-5) and ``beta_i = N / (GD(g_i) * n)``
    (Eq. 6, ``n`` the non-empty regions, as in the reference implementation). With ``momentum > 0``,
    ``GD`` is the moving average ``S_k <- momentum * S_k + (1 - momentum) * R_k`` of the non-empty
    regions' counts (Eq. 9 and mmdet).

    Args:
        pred: ``(..., C)`` floating logits ``x`` (any dtype and layout; computed in float32), or probabilities
            with ``activated``.
        target: ``(..., C)`` binary or soft targets ``p*`` in [0, 1] (float or bool); integer class labels
            of shape ``(...)`` in ``[0, C]``, where ``C`` is background (all targets 0), as RetinaNet-style
            heads pass them; or QualityFocalLoss's ``(labels, scores)``, each of shape ``(...)``: the soft
            target is the score at the label and 0 elsewhere (GFL, TOOD, RTMDet).
        weight: optional tensor (a bool mask, or mmdet's label weights) of the shape of the target, or one per
            row, ``(...)`` or ``(..., 1)``: the entries where ``weight > 0`` take part. ``None``: all.
        acc_sum: ``(bins,)`` float32 moving-average state returned by the previous call, or ``None`` to
            start it.
        bins: number of unit regions, an int >= 1.
        momentum: moving-average parameter in [0, 1); 0 uses this call's counts only.
        reduction: ``'mean'`` (divide by ``N``), ``'sum'`` or ``'none'`` (``beta_i * L_CE_i`` per entry, of
            the shape of ``pred``).
        activated: ``pred`` holds probabilities ``p`` (TOOD's head): ``g = |p - p*|`` and the BCE of ``p``.

    Returns:
        ``(loss, acc_sum)``: the float32 loss and the ``(bins,)`` float32 state to pass to the next call.
        Nothing is modified in place.

    Example (a Detectron2 head or a training loop: keep ``acc_sum`` with the model)::

        loss_cls, acc_sum = ghm_c_loss(logits, labels, valid, acc_sum, bins=30, momentum=0.75)
    """
    bins, momentum, reduction = checks.check_options(bins, momentum, reduction)
    target, weight = checks.ghm_c_inputs(pred, target, weight, checks.check_flag(activated, 'activated'))
    state = checks.check_state(acc_sum, bins, pred.device)
    result = ghm_c(pred, target, weight, state, momentum, reduction, activated=activated)
    return result.loss, result.density.state.acc_sum


def ghm_c_softmax_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                       acc_sum: Optional[Tensor] = None, *, bins: int = 10, momentum: float = 0.0,
                       reduction: str = 'mean') -> Tuple[Tensor, Tensor]:
    """GHM-C for softmax classifiers, such as the RoI head of a two-stage detector.

    For sample ``i`` with logits ``x_i`` over ``K`` outputs (``K = C + 1`` in mmdet's ``BBoxHead``, the last
    being background) and label ``y_i``, the cross-entropy gradient with respect to the logits is
    ``softmax(x_i) - onehot(y_i)``; half its L1 norm is the gradient norm
    ``g_i = 1 - softmax(x_i)[y_i]``, in [0, 1] as Eq. 3's. The density, ``beta_i = N / (GD(g_i) * n)`` and
    the moving average are those of :func:`ghm_c_loss`, over samples; the loss is
    ``L = (1 / N) * sum_i beta_i * CE_i`` with ``CE_i = -log softmax(x_i)[y_i]``. With ``bins=1`` and
    ``momentum=0`` it is the mean cross-entropy over the valid samples, value and gradient.

    Args:
        pred: ``(..., K)`` floating logits.
        target: ``(...)`` integer labels in ``[0, K - 1]``.
        weight: optional ``(...)`` tensor: the samples where ``weight > 0`` take part. ``None``: all.
        acc_sum, bins, momentum: as in :func:`ghm_c_loss`.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (``beta_i * CE_i`` per sample, of the shape of
            ``target``).

    Returns:
        ``(loss, acc_sum)``, as :func:`ghm_c_loss`.
    """
    bins, momentum, reduction = checks.check_options(bins, momentum, reduction)
    checks.check_softmax_inputs(pred, target, weight)
    state = checks.check_state(acc_sum, bins, pred.device)
    result = ghm_c_softmax(pred, target, weight, state, momentum, reduction)
    return result.loss, result.density.state.acc_sum


def ghm_r_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
               acc_sum: Optional[Tensor] = None, *, mu: float = 0.02, bins: int = 10,
               momentum: float = 0.0, reduction: str = 'mean') -> Tuple[Tensor, Tensor]:
    """GHM-R: Authentic Smooth L1 weighted by the gradient density harmonizing parameter.

    ``L_GHM-R = (1 / N) * sum_i beta_i * ASL1(d_i)`` (Eq. 13 of arXiv:1811.05181), with
    ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` (Eq. 11), ``d = pred - target``, the gradient norm
    ``gr = |d| / sqrt(d^2 + mu^2)`` in [0, 1) (Eq. 12), and beta and the moving average as in
    :func:`ghm_c_loss`. ``N`` is the sum of ``weight``; an entry takes part when its weight is > 0 (its
    magnitude is not otherwise used, as in mmdet).

    Args:
        pred: ``(...)`` floating box deltas (any dtype; computed in float32).
        target: ``(...)`` targets of the same shape.
        weight: optional ``(...)`` weights of the same shape; ``None``: all 1.
        acc_sum: ``(bins,)`` state from the previous call, or ``None``.
        mu: ASL1 parameter, > 0.
        bins, momentum: as in :func:`ghm_c_loss`.
        reduction: ``'mean'`` (divide by ``N``), ``'sum'`` or ``'none'`` (``beta_i * ASL1(d_i)`` per entry).

    Returns:
        ``(loss, acc_sum)``, as :func:`ghm_c_loss`.
    """
    bins, momentum, reduction = checks.check_options(bins, momentum, reduction)
    mu = checks.check_positive(mu, 'mu')
    checks.check_ghm_r_inputs(pred, target, weight)
    result = ghm_r(pred, target, weight, checks.check_state(acc_sum, bins, pred.device), mu, momentum, reduction)
    return result.loss, result.density.state.acc_sum


# --------------------------------------------------------------------------------------------------
# The computations, for arguments already checked; choose_route (routes.py) picks the form. The modules
# call these with their buffers as the state, reduction 'none' or 'sum', and their options.
# --------------------------------------------------------------------------------------------------


def ghm_c(pred: Tensor, target: Tensor, weight: Optional[Tensor], state: GHMState, momentum: float,
          reduction: str, all_reduce: Optional[AllReduce] = None, record_shares: bool = False,
          activated: bool = False) -> GHMResult:
    """:func:`ghm_c_loss` for arguments that :func:`~.checks.ghm_c_inputs` returned, with any :class:`GHMState`
    (the warm start's too), the statistics and, with ``all_reduce``, the density of all workers; ``bins`` is
    ``state.acc_sum``'s size."""
    num_classes, labels = pred.shape[-1], checks.is_label_target(pred, target)
    valid = None if weight is None else weight > 0
    if labels:  # (N, C) logits, (N,) labels, (N, 1) valid rows
        pred, target = pred.reshape(-1, num_classes), target.reshape(-1).long()
        valid = None if valid is None else valid.reshape(-1, 1)
        num_valid = _count(valid, target.numel(), pred.device) * num_classes
    else:
        num_valid = _count(valid, pred.numel(), pred.device)
    route = choose_route(pred.device, labels=labels, summed=reduction != 'none')
    edges = _edges(route, state.acc_sum.numel(), GHMC_LAST_EDGE, pred.device)

    if route is Route.LABEL_FUSED:
        counts, regions = label_bin_counts(pred, target, valid, edges)
        density = harmonize(counts, num_valid, state, momentum, all_reduce=all_reduce)
        loss, shares = label_weighted_bce(pred, target, regions, density.beta, record_shares)
        return GHMResult(_reduce(loss, reduction, density.total), density, shares)

    x = pred.float()
    if labels:  # one-hot by broadcasting: fused away under compile
        target = target.unsqueeze(-1) == torch.arange(num_classes, device=target.device)
    target = target.to(x.dtype)
    gradient_norm = bce_gradient(x.detach(), target).abs() if activated else sigmoid_gradient_norm(x, target)
    counts, regions = bin_regions(gradient_norm, valid, edges)
    density = harmonize(counts, num_valid, state, momentum, all_reduce=all_reduce)
    weights = region_weights(regions, density.beta, edges)
    bce = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    if reduction == 'none' or record_shares:
        weighted = bce(x, target, reduction='none') * weights
        shares = loss_shares(weighted, gradient_norm).double() if record_shares else None
    else:
        del gradient_norm, regions  # free them before the BCE allocates
        # reduction='sum' inside the fused BCE never materialises the per-entry loss.
        weighted, shares = bce(x, target, weight=weights, reduction='sum'), None
    return GHMResult(_reduce(weighted, reduction, density.total), density, shares)


def ghm_c_softmax(pred: Tensor, target: Tensor, weight: Optional[Tensor], state: GHMState, momentum: float,
                  reduction: str, all_reduce: Optional[AllReduce] = None,
                  record_shares: bool = False) -> GHMResult:
    """:func:`ghm_c_softmax_loss` for checked arguments (state, statistics and workers as :func:`ghm_c`)."""
    target, valid = target.long(), None if weight is None else weight > 0
    route = choose_route(pred.device, loss='ghm_c_softmax', summed=reduction != 'none')
    edges = _edges(route, state.acc_sum.numel(), GHMC_LAST_EDGE, pred.device)
    cross_entropy = -F.log_softmax(pred.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    gradient_norm = softmax_gradient_norm(pred, target)
    counts, regions = bin_regions(gradient_norm, valid, edges)
    density = harmonize(counts, _count(valid, target.numel(), pred.device), state, momentum,
                        all_reduce=all_reduce)
    weighted = cross_entropy * region_weights(regions, density.beta, edges)
    shares = loss_shares(weighted, gradient_norm).double() if record_shares else None
    return GHMResult(_reduce(weighted, reduction, density.total), density, shares)


def ghm_r(pred: Tensor, target: Tensor, weight: Optional[Tensor], state: GHMState, mu: float, momentum: float,
          reduction: str, all_reduce: Optional[AllReduce] = None) -> GHMResult:
    """:func:`ghm_r_loss` for checked arguments (state and workers as :func:`ghm_c`).

    On :attr:`Route.SELECTED` only the entries with ``weight > 0`` are computed: an entry with weight 0 is
    not counted, adds exactly 0 to the loss and gets a zero gradient, so the density, beta and every
    gradient are those of the dense computation.
    """
    route = choose_route(pred.device, loss='ghm_r', weighted=weight is not None, summed=reduction != 'none')
    edges = _edges(route, state.acc_sum.numel(), GHMR_LAST_EDGE, pred.device)
    total = None if weight is None else weight.sum(dtype=torch.float64)
    valid = None if weight is None else weight > 0
    if route is Route.SELECTED:
        selected = valid.reshape(-1).nonzero().squeeze(1)
        pred, target = pred.reshape(-1).index_select(0, selected), target.reshape(-1).index_select(0, selected)
        valid = None
    diff = pred.float() - target.float()
    counts, regions = bin_regions(asl1_gradient_norm(diff, mu), valid, edges)
    density = harmonize(counts, _count(valid, diff.numel(), diff.device), state, momentum, total, all_reduce)
    weighted = asl1_loss(diff, mu) * region_weights(regions, density.beta, edges)
    return GHMResult(_reduce(weighted, reduction, density.total), density)


def _edges(route: Route, bins: int, last_edge: float, device) -> Edges:
    """The edges in the form the route bins with: Python floats to trace, else the float32 tensor."""
    return edge_values(bins, last_edge) if route is Route.TRACED else unit_region_edges(bins, last_edge, device)


def _count(valid: Optional[Tensor], size: int, device) -> Tensor:
    """The number of valid entries, float64 (exact beyond 2**24), without a host sync."""
    if valid is None:
        return torch.full((), size, dtype=torch.float64, device=device)
    return valid.sum(dtype=torch.float64)


def _reduce(weighted_loss: Tensor, reduction: str, total: Tensor) -> Tensor:
    if reduction == 'none':
        return weighted_loss
    loss_sum = weighted_loss if weighted_loss.dim() == 0 else weighted_loss.sum()
    return loss_sum if reduction == 'sum' else loss_sum / total.to(loss_sum.dtype)

"""GHM-C and GHM-R as plain functions: one call per loss, the moving-average state passed in and returned.

Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181). With the same
arguments, call after call, the values equal mmdet 3.3.0's ``GHMC``/``GHMR`` modules (which
:mod:`ghm_mmdet.models` wraps around these functions).

Each public function checks its arguments once, then runs one of two forms of the same mathematics:
eager (``bucketize``/``bincount`` and hand-fused label passes) or, while ``torch.compile`` traces it, a
plain expression whose binning and counting Inductor fuses into one pass (:mod:`.density`).
"""
from typing import Callable, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import (GHMArgumentError, GHMArgumentTypeError, check_bins, check_bool_mask, check_floating,
                     check_labels_in_range, check_momentum, check_positive, check_reduction, check_same_shape,
                     check_unit_interval)
from .density import (GHMC_LAST_EDGE, GHMR_LAST_EDGE, bin_counts, bin_indices, edge_values, fused_bin_counts,
                      fused_weights, gather_weights, unit_region_edges, weight_table)
from .gradient_norm import asl1_gradient_norm, asl1_loss, sigmoid_gradient_norm
from .harmonize import AllReduce, Density, harmonize
from .label_bce import harmonized_label_bce, loss_shares
from .routes import Route, choose_route

#: Unit-region edges as the eager routes bin with them (a tensor) or as the traced route does (floats).
Edges = Union[Tensor, Tuple[float, ...]]


class GHMResult(NamedTuple):
    """What one GHM loss call computed (see :func:`ghm_c_loss` for the user-facing pair).

    Attributes:
        loss: the loss, reduced as asked (float32).
        density: :class:`~ghm_mmdet.core.harmonize.Density`: counts, ``N``, beta per region and the new
            state.
        shares: ``None``, or with ``record_shares`` the ``(3,)`` float64 sums of ``beta_i * loss_i`` over
            all counted entries, over those with ``g < 0.1`` and over those with ``g > 0.9``.
    """
    loss: Tensor
    density: Density
    shares: Optional[Tensor]


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def ghm_c_loss(logits: Tensor, targets: Tensor, valid: Optional[Tensor] = None,
               acc_sum: Optional[Tensor] = None, *, bins: int = 10, momentum: float = 0.0,
               reduction: str = 'mean') -> Tuple[Tensor, Tensor]:
    """GHM-C: sigmoid binary cross-entropy weighted by the gradient density harmonizing parameter.

    ``L_GHM-C = (1 / N) * sum_i beta_i * L_CE(p_i, p*_i)`` (Eq. 8 of arXiv:1811.05181) over the ``N`` valid
    entries, with the gradient norm ``g = |sigmoid(x) - p*|`` (Eq. 3), the gradient density ``GD(g)``
    counted in ``bins`` unit regions of width ``1 / bins`` (Eq. 4-5) and ``beta_i = N / (GD(g_i) * n)``
    (Eq. 6, ``n`` the non-empty regions, as in the reference implementation). With ``momentum > 0``,
    ``GD`` is the moving average ``S_k <- momentum * S_k + (1 - momentum) * R_k`` of the non-empty
    regions' counts (Eq. 9 and mmdet).

    Args:
        logits: ``(..., C)`` floating logits ``x`` (any dtype and layout; computed in float32).
        targets: either ``(..., C)`` binary or soft targets ``p*`` in [0, 1] (float or bool), or integer
            class labels of shape ``(...)`` in ``[0, C]``, where ``C`` is background (all targets 0), as
            RetinaNet-style heads pass them.
        valid: optional bool mask of the shape of ``targets``: the entries (with labels: the rows) that
            take part. ``None``: all.
        acc_sum: ``(bins,)`` float32 moving-average state returned by the previous call, or ``None`` to
            start it.
        bins: number of unit regions, an int >= 1.
        momentum: moving-average parameter in [0, 1); 0 uses this call's counts only.
        reduction: ``'mean'`` (divide by ``N``), ``'sum'`` or ``'none'`` (``beta_i * L_CE_i`` per entry, of
            the shape of ``logits``).

    Returns:
        ``(loss, acc_sum)``: the float32 loss and the ``(bins,)`` float32 state to pass to the next call.
        Nothing is modified in place.

    Example (a Detectron2 head or a training loop: keep ``acc_sum`` with the model)::

        loss_cls, acc_sum = ghm_c_loss(logits, labels, valid, acc_sum, bins=30, momentum=0.75)
    """
    bins, momentum, reduction = check_bins(bins), check_momentum(momentum), check_reduction(reduction)
    check_floating(logits, 'logits', min_dim=1)
    check_ghm_c_targets(logits, targets, valid)
    acc_sum = initial_acc_sum(acc_sum, bins, logits.device)
    result = ghm_c(logits, targets, valid, acc_sum, momentum=momentum, reduction=reduction)
    return result.loss, result.density.acc_sum


def ghm_c_softmax_loss(logits: Tensor, labels: Tensor, valid: Optional[Tensor] = None,
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
        logits: ``(..., K)`` floating logits.
        labels: ``(...)`` integer labels in ``[0, K - 1]``.
        valid: optional ``(...)`` bool mask of the samples that take part. ``None``: all.
        acc_sum, bins, momentum: as in :func:`ghm_c_loss`.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (``beta_i * CE_i`` per sample, of the shape of
            ``labels``).

    Returns:
        ``(loss, acc_sum)``, as :func:`ghm_c_loss`.
    """
    bins, momentum, reduction = check_bins(bins), check_momentum(momentum), check_reduction(reduction)
    check_floating(logits, 'logits', min_dim=1)
    check_softmax_targets(logits, labels, valid)
    acc_sum = initial_acc_sum(acc_sum, bins, logits.device)
    result = ghm_c_softmax(logits, labels, valid, acc_sum, momentum=momentum, reduction=reduction)
    return result.loss, result.density.acc_sum


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
    bins, momentum, reduction = check_bins(bins), check_momentum(momentum), check_reduction(reduction)
    mu = check_positive(mu, 'mu')
    check_floating(pred, 'pred')
    check_same_shape(target, 'target', pred, 'pred')
    if weight is not None:
        check_same_shape(weight, 'weight', pred, 'pred')
    acc_sum = initial_acc_sum(acc_sum, bins, pred.device)
    result = ghm_r(pred, target, weight, acc_sum, mu=mu, momentum=momentum, reduction=reduction)
    return result.loss, result.density.acc_sum


# --------------------------------------------------------------------------------------------------
# Argument checks shared with the modules
# --------------------------------------------------------------------------------------------------


def initial_acc_sum(acc_sum: Optional[Tensor], bins: int, device) -> Tensor:
    """The state to start from: zeros for ``None``, else ``acc_sum`` after checking its shape."""
    if acc_sum is None:
        return torch.zeros(bins, device=device)
    check_floating(acc_sum, 'acc_sum')
    if acc_sum.shape != (bins,):
        raise GHMArgumentError(f'acc_sum must have shape ({bins},) for bins={bins}, got '
                               f'{tuple(acc_sum.shape)}')
    return acc_sum


def is_label_target(logits: Tensor, targets) -> bool:
    """Whether ``targets`` are integer class labels (one dimension fewer than ``logits``)."""
    return (isinstance(targets, Tensor) and targets.dim() == logits.dim() - 1
            and not targets.is_floating_point() and targets.dtype != torch.bool)


def check_ghm_c_targets(logits: Tensor, targets, valid: Optional[Tensor],
                        names=('logits', 'targets', 'valid')) -> bool:
    """Check ``targets`` and ``valid`` against ``logits`` for GHM-C; return whether they are labels.

    ``names`` are the three arguments' names in the caller's signature, for the messages.
    """
    logits_name, targets_name, valid_name = names
    if not isinstance(targets, Tensor):
        raise GHMArgumentTypeError(f'{targets_name} must be a torch.Tensor, got {type(targets).__name__}')
    if valid is not None:
        check_bool_mask(valid, valid_name)
    if targets.dim() == logits.dim():
        check_same_shape(targets, targets_name, logits, logits_name)
        if valid is not None:
            check_same_shape(valid, valid_name, logits, logits_name)
        check_unit_interval(targets, targets_name)
        return False
    if not is_label_target(logits, targets):
        raise GHMArgumentError(
            f'{targets_name} must be binary targets of the shape of {logits_name} {tuple(logits.shape)} '
            f'or integer labels of shape {tuple(logits.shape[:-1])}, got {targets.dtype} of shape '
            f'{tuple(targets.shape)}')
    if targets.shape != logits.shape[:-1]:
        raise GHMArgumentError(f'{targets_name}: integer labels must have shape {tuple(logits.shape[:-1])} '
                               f'for {logits_name} {tuple(logits.shape)}, got {tuple(targets.shape)}')
    if valid is not None:
        check_same_shape(valid, valid_name, targets, 'the integer labels')
    check_labels_in_range(targets, logits.shape[-1], targets_name)
    return True


def check_softmax_targets(logits: Tensor, labels, valid: Optional[Tensor],
                          names=('logits', 'labels', 'valid')) -> None:
    """Check integer ``labels`` in ``[0, K - 1]`` and ``valid`` against ``(..., K)`` softmax logits."""
    logits_name, labels_name, valid_name = names
    if not is_label_target(logits, labels) or labels.shape != logits.shape[:-1]:
        got = (f'{labels.dtype} of shape {tuple(labels.shape)}' if isinstance(labels, Tensor)
               else type(labels).__name__)
        raise GHMArgumentError(f'{labels_name} must be integer labels of shape {tuple(logits.shape[:-1])} '
                               f'for softmax {logits_name} {tuple(logits.shape)}, got {got}')
    if valid is not None:
        check_bool_mask(valid, valid_name)
        check_same_shape(valid, valid_name, labels, labels_name)
    check_labels_in_range(labels, logits.shape[-1] - 1, labels_name, background=False)


# --------------------------------------------------------------------------------------------------
# The computations, for arguments already checked; choose_route (routes.py) picks the form.
# --------------------------------------------------------------------------------------------------


def _harmonizer(total: Tensor, acc_sum: Tensor, momentum: float, floor: Optional[Tensor],
                all_reduce: Optional[AllReduce], num_valid: Optional[Tensor] = None) -> Callable[[Tensor], Density]:
    # A closure, not functools.partial: torch 2.0's Dynamo cannot trace partial.
    return lambda counts: harmonize(counts, total, acc_sum, momentum, num_valid=num_valid, floor=floor,
                                    all_reduce=all_reduce)


def _edges(route: Route, bins: int, last_edge: float, edges: Optional[Tensor], device) -> Edges:
    """The edges in the form the route bins with: Python floats to trace, else the float32 tensor."""
    if route is Route.TRACED:
        return edge_values(bins, last_edge)
    return unit_region_edges(bins, last_edge, device) if edges is None else edges


def _weights(gradient_norm: Tensor, valid: Optional[Tensor], edges: Edges,
             harmonizer: Callable[[Tensor], Density]) -> Tuple[Tensor, Density]:
    """Beta of every entry and the density, traced (``edges`` as floats) or eager (as a tensor)."""
    if isinstance(edges, tuple):
        density = harmonizer(fused_bin_counts(gradient_norm, valid, edges))
        return fused_weights(gradient_norm, valid, density.beta.float(), edges), density
    index = bin_indices(gradient_norm, edges, valid)
    density = harmonizer(bin_counts(index, edges.numel() - 1))
    return gather_weights(weight_table(density.beta), index), density


def _reduce(weighted_loss: Tensor, reduction: str, total: Tensor) -> Tensor:
    if reduction == 'none':
        return weighted_loss
    loss_sum = weighted_loss if weighted_loss.dim() == 0 else weighted_loss.sum()
    return loss_sum if reduction == 'sum' else loss_sum / total.to(loss_sum.dtype)


def _count(valid: Optional[Tensor], size: int, device) -> Tensor:
    if valid is None:
        return torch.full((), size, dtype=torch.float64, device=device)
    return valid.sum(dtype=torch.float64)


def _weighted_and_shares(loss: Tensor, weights: Tensor, gradient_norm: Tensor,
                         record_shares: bool) -> Tuple[Tensor, Optional[Tensor]]:
    weighted = loss * weights
    return weighted, (loss_shares(weighted, gradient_norm).double() if record_shares else None)


def ghm_c(logits: Tensor, targets: Tensor, valid: Optional[Tensor], acc_sum: Tensor, *, momentum: float,
          reduction: str, edges: Optional[Tensor] = None, floor: Optional[Tensor] = None,
          all_reduce: Optional[AllReduce] = None, record_shares: bool = False) -> GHMResult:
    """:func:`ghm_c_loss` for checked arguments, with the module options (the ``edges`` buffer, warm-start
    ``floor``, synchronised statistics) and the statistics; ``bins`` is ``acc_sum``'s size."""
    bins, num_classes = acc_sum.numel(), logits.shape[-1]
    labels = is_label_target(logits, targets)
    if labels:
        logits = logits.reshape(-1, num_classes)
        targets = targets.reshape(-1).long()
        valid = None if valid is None else valid.reshape(-1)
        num_valid = _count(valid, targets.numel(), logits.device) * num_classes
    else:
        num_valid = _count(valid, logits.numel(), logits.device)
    harmonizer = _harmonizer(num_valid, acc_sum, momentum, floor, all_reduce)
    route = choose_route(logits.device, labels=labels, summed=reduction != 'none')
    edges = _edges(route, bins, GHMC_LAST_EDGE, edges, logits.device)

    if route is Route.LABEL_FUSED:
        loss_sum, density, shares = harmonized_label_bce(logits.contiguous(), targets, valid, edges, harmonizer,
                                                         record_shares)
        return GHMResult(_reduce(loss_sum, reduction, density.total), density, shares)

    x = logits.float()
    if labels:
        # One-hot by broadcasting: materialised in eager mode, fused away under compile.
        targets = targets.unsqueeze(-1) == torch.arange(num_classes, device=targets.device)
        valid = None if valid is None else valid.unsqueeze(-1)
    targets = targets.to(x.dtype)
    gradient_norm = sigmoid_gradient_norm(x, targets)
    weights, density = _weights(gradient_norm, valid, edges, harmonizer)
    if reduction == 'none' or record_shares:
        bce = F.binary_cross_entropy_with_logits(x, targets, reduction='none')
        weighted, shares = _weighted_and_shares(bce, weights, gradient_norm, record_shares)
    else:
        del gradient_norm  # free it before the BCE allocates
        # reduction='sum' inside the fused BCE never materialises the per-entry loss.
        weighted = F.binary_cross_entropy_with_logits(x, targets, weight=weights, reduction='sum')
        shares = None
    return GHMResult(_reduce(weighted, reduction, density.total), density, shares)


def softmax_gradient_norm(logits: Tensor, labels: Tensor) -> Tensor:
    """``g = 1 - softmax(x)[y]``, half the L1 norm of the cross-entropy gradient, float32, detached."""
    probs = torch.softmax(logits.detach().float(), dim=-1)
    return 1.0 - probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def ghm_c_softmax(logits: Tensor, labels: Tensor, valid: Optional[Tensor], acc_sum: Tensor, *,
                  momentum: float, reduction: str, edges: Optional[Tensor] = None,
                  floor: Optional[Tensor] = None, all_reduce: Optional[AllReduce] = None,
                  record_shares: bool = False) -> GHMResult:
    """:func:`ghm_c_softmax_loss` for checked arguments (module options and statistics as :func:`ghm_c`)."""
    labels = labels.long()
    num_valid = _count(valid, labels.numel(), logits.device)
    harmonizer = _harmonizer(num_valid, acc_sum, momentum, floor, all_reduce)
    route = choose_route(logits.device, loss='ghm_c_softmax', summed=reduction != 'none')
    edges = _edges(route, acc_sum.numel(), GHMC_LAST_EDGE, edges, logits.device)
    cross_entropy = -F.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    gradient_norm = softmax_gradient_norm(logits, labels)
    weights, density = _weights(gradient_norm, valid, edges, harmonizer)
    weighted, shares = _weighted_and_shares(cross_entropy, weights, gradient_norm, record_shares)
    return GHMResult(_reduce(weighted, reduction, density.total), density, shares)


def ghm_r(pred: Tensor, target: Tensor, weight: Optional[Tensor], acc_sum: Tensor, *, mu: float,
          momentum: float, reduction: str, edges: Optional[Tensor] = None, floor: Optional[Tensor] = None,
          all_reduce: Optional[AllReduce] = None) -> GHMResult:
    """:func:`ghm_r_loss` for checked arguments (module options and statistics as :func:`ghm_c`).

    On :attr:`Route.SELECTED` only the entries with ``weight > 0`` are computed: an entry with weight 0 is
    not counted, adds exactly 0 to the loss and gets a zero gradient, so the density, beta and every
    gradient are those of the dense computation.
    """
    route = choose_route(pred.device, loss='ghm_r', weighted=weight is not None, summed=reduction != 'none')
    edges = _edges(route, acc_sum.numel(), GHMR_LAST_EDGE, edges, pred.device)
    valid = None
    if route is Route.SELECTED:
        selected = (weight.reshape(-1) > 0).nonzero().squeeze(1)
        pred, target = pred.reshape(-1).index_select(0, selected), target.reshape(-1).index_select(0, selected)
        num_valid = torch.full((), selected.numel(), dtype=torch.float64)
    elif weight is not None:
        valid = weight > 0
        num_valid = valid.sum(dtype=torch.float64)
    diff = pred.float() - target.float()
    if weight is None:
        num_valid = _count(None, diff.numel(), diff.device)
    total = num_valid if weight is None else weight.sum(dtype=torch.float64)
    harmonizer = _harmonizer(total, acc_sum, momentum, floor, all_reduce, num_valid)
    weights, density = _weights(asl1_gradient_norm(diff, mu), valid, edges, harmonizer)
    return GHMResult(_reduce(asl1_loss(diff, mu) * weights, reduction, density.total), density, None)

"""GHM-C and GHM-R as MMDetection losses: thin modules over :mod:`ghm_mmdet.core` that hold the moving
average as buffers, follow mmdet's loss contract and keep the statistics of their last call for
:class:`~ghm_mmdet.engine.GHMStatsHook`. By default their numbers equal mmdet 3.3.0's ``GHMC``/``GHMR``."""
from typing import Optional, Union

import torch
from mmdet.models.losses.utils import weight_reduce_loss
from mmengine import dist
from torch import Tensor, nn

from ghm_mmdet.core import checks
from ghm_mmdet.core import losses as core
from ghm_mmdet.core.density import GHMC_LAST_EDGE, GHMR_LAST_EDGE, GHMState, unit_region_edges
from ghm_mmdet.core.gradient_norm import asl1_gradient_norm, bce_gradient, sigmoid_gradient_norm, softmax_gradient_norm
from ghm_mmdet.core.label_bce import one_hot


def _core_reduction(reduction: str) -> str:
    """The core sums; :meth:`_GHMLoss._finish` divides by ``N`` with mmdet's ``weight_reduce_loss``."""
    return 'none' if reduction == 'none' else 'sum'


class _GHMLoss(nn.Module):
    """State, reduction and statistics shared by GHM-C and GHM-R.

    Buffers (names as in mmdet, so its published GHM checkpoints load with no missing or unexpected key):
    ``edges`` always; ``acc_sum`` when ``momentum > 0`` or ``warm_start``; ``acc_floor`` with
    ``warm_start`` only.

    Attributes:
        stats_label (str): ``'ghm_c'`` or ``'ghm_r'``, the label of the statistics.
        record_loss_shares (bool): when True, the next call also sums GHM-C's loss over easy
            (``g < 0.1``) and outlier (``g > 0.9``) examples (a few more passes; the stats hook sets it
            on the iterations it records).
        last_stats (dict or None): detached tensors of the last call, built without a host sync:
            ``counts`` (``(bins,)`` float64 histogram), ``num_valid`` and ``total`` (``N``), ``density``,
            ``beta`` (``(bins,)`` float64), ``loss``; and ``loss_sum``, ``loss_easy``, ``loss_outlier``
            when recorded.
    """
    stats_label = ''

    def __init__(self, bins, momentum, loss_weight, reduction, last_edge, sync_stats, warm_start):
        super().__init__()
        self.bins, self.momentum, self.reduction = checks.check_options(bins, momentum, reduction)
        self.loss_weight = checks.check_non_negative(loss_weight, 'loss_weight')
        self.sync_stats = checks.check_flag(sync_stats, 'sync_stats')
        self.warm_start = checks.check_flag(warm_start, 'warm_start')
        self.register_buffer('edges', unit_region_edges(self.bins, last_edge))
        if self.momentum > 0 or warm_start:
            self.register_buffer('acc_sum', torch.zeros(self.bins))
        if warm_start:
            self.register_buffer('acc_floor', torch.zeros(()))
        self.record_loss_shares = False
        self.last_stats = None

    def _state(self, device) -> GHMState:
        """The buffers as the core's state (zeros without a moving average)."""
        acc_sum = getattr(self, 'acc_sum', None)
        return GHMState(torch.zeros(self.bins, device=device) if acc_sum is None else acc_sum,
                        getattr(self, 'acc_floor', None))

    def _world_size(self) -> int:
        return dist.get_world_size() if self.sync_stats else 1

    def _all_reduce(self):
        return dist.all_reduce if self._world_size() > 1 else None

    def _finish(self, result: core.GHMResult, reduction: str) -> Tensor:
        """Store the state and the statistics; normalise the core's sum and weight it as mmdet does."""
        density = result.density
        if hasattr(self, 'acc_sum'):
            self.acc_sum.copy_(density.state.acc_sum)
        if density.state.floor is not None:
            self.acc_floor.copy_(density.state.floor)
        # With synchronised statistics beta is the whole batch's; scaling by the world size makes DDP's
        # mean over ranks equal the single-process loss, for 'mean' and 'sum' alike.
        world_size = self._world_size()
        if reduction == 'mean':
            loss = weight_reduce_loss(result.loss, None, 'mean',
                                      avg_factor=density.total.to(result.loss.dtype) / world_size)
        else:
            loss = result.loss * world_size if reduction == 'sum' else result.loss
        loss = loss * self.loss_weight
        stats = dict(counts=density.counts, num_valid=density.num_valid, total=density.total,
                     density=density.density, beta=density.beta, loss=loss.detach().sum())
        if result.shares is not None:
            stats.update(loss_sum=result.shares[0], loss_easy=result.shares[1],
                         loss_outlier=result.shares[2])
        self.last_stats = {key: value.detach() for key, value in stats.items()}
        return loss

    @staticmethod
    def _resolve_weight(weight, label_weight):
        if weight is not None and label_weight is not None:
            raise checks.GHMArgumentError('pass the per-entry weights as weight or as label_weight, not both')
        return label_weight if weight is None else weight

    @staticmethod
    def _flat(gradient_norm: Tensor, weight: Optional[Tensor]):
        """``(g, valid)`` flattened, ``valid`` broadcast from ``weight > 0`` (all True for ``None``)."""
        valid = gradient_norm.new_ones((), dtype=torch.bool) if weight is None else weight > 0
        return gradient_norm.reshape(-1), valid.expand(gradient_norm.shape).reshape(-1)

    def extra_repr(self) -> str:
        return (f'bins={self.bins}, momentum={self.momentum}, loss_weight={self.loss_weight}, '
                f'reduction={self.reduction!r}, sync_stats={self.sync_stats}, warm_start={self.warm_start}')


class GHMC(_GHMLoss):
    """GHM-C: cross-entropy weighted by the gradient density harmonizing parameter.

    Sigmoid (``use_sigmoid=True``, mmdet's ``GHMC`` exactly): ``L = sum_i beta_i * BCE(x_i, p*_i) / N``
    over the valid entries (Eq. 8 of arXiv:1811.05181), with ``g = |sigmoid(x) - p*|``; see
    :func:`ghm_mmdet.core.ghm_c_loss`. Softmax (``use_sigmoid=False``, for ``BBoxHead``'s ``C + 1``
    outputs): ``L = sum_i beta_i * CE_i / N`` over the valid samples, with ``g_i = 1 - softmax(x_i)[y_i]``;
    see :func:`ghm_mmdet.core.ghm_c_softmax_loss`.

    Args:
        bins: number of unit regions, int >= 1.
        momentum: moving-average parameter in [0, 1); 0 uses this call's counts only.
        use_sigmoid: sigmoid binary cross-entropy (True) or softmax cross-entropy (False).
        loss_weight: factor on the loss, >= 0.
        reduction: ``'mean'`` (divide by ``N``), ``'sum'`` or ``'none'`` (per-entry ``beta_i * loss_i``,
            whose sum is the ``'sum'`` value).
        sync_stats: all-reduce the bin counts and ``N`` over distributed ranks (mmengine.dist), so the
            gradient density is that of the whole batch rather than per GPU (the paper's definition).
        warm_start: use the seed's warm-started moving average (see
            :func:`ghm_mmdet.core.warm_start_ghm_weights`) instead of mmdet's.
        activated: sigmoid only: ``pred`` holds probabilities, not logits (TOOD's head), as
            QualityFocalLoss's ``activated``.

    Inputs to ``forward``:
        pred: ``(..., C)`` logits (``(..., C + 1)`` for softmax), any floating dtype and layout.
        target: sigmoid: ``(..., C)`` binary or soft targets, ``(...)`` integer labels in [0, C]
            (C = background), or QualityFocalLoss's ``(labels, scores)`` (see
            :func:`ghm_mmdet.core.ghm_c_loss`); softmax: ``(...)`` integer labels in [0, C].
        weight / label_weight: the target's shape, or (sigmoid) one per row, ``(...)`` or ``(..., 1)``; > 0
            marks a valid entry (its magnitude is not used, as in mmdet). ``None`` means all valid.
        avg_factor: accepted and ignored, as in mmdet: beta already holds ``N`` (Eq. 8), so the head's
            normaliser (RetinaNet: the number of positives) would scale the loss by about ``N / num_pos``.
        reduction_override: one of ``None, 'none', 'mean', 'sum'``.
        Other keyword arguments a head passes are ignored, as mmdet's ``GHMC`` does.
    """
    stats_label = 'ghm_c'

    def __init__(self, bins: int = 10, momentum: float = 0.0, use_sigmoid: bool = True,
                 loss_weight: float = 1.0, reduction: str = 'mean', sync_stats: bool = False,
                 warm_start: bool = False, activated: bool = False):
        use_sigmoid = checks.check_flag(use_sigmoid, 'use_sigmoid')
        activated = checks.check_flag(activated, 'activated')
        if activated and not use_sigmoid:
            raise checks.GHMArgumentError('activated=True (probabilities) needs use_sigmoid=True')
        super().__init__(bins, momentum, loss_weight, reduction, GHMC_LAST_EDGE, sync_stats, warm_start)
        self.use_sigmoid, self.activated = use_sigmoid, activated

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[int, float, Tensor]] = None,
                reduction_override: Optional[str] = None, label_weight: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        reduction = checks.check_reduction(reduction_override or self.reduction, 'reduction_override')
        target, weight = self._checked_inputs(pred, target, weight, label_weight)
        options = (self._state(pred.device), self.momentum, _core_reduction(reduction), self._all_reduce(),
                   self.record_loss_shares)
        if self.use_sigmoid:
            result = core.ghm_c(pred, target, weight, *options, activated=self.activated)
        else:
            result = core.ghm_c_softmax(pred, target, weight, *options)
        return self._finish(result, reduction)

    def _checked_inputs(self, pred: Tensor, target, weight: Optional[Tensor], label_weight: Optional[Tensor]):
        """``(target, weight)`` checked, in the form the core takes (:func:`~ghm_mmdet.core.checks.ghm_c_inputs`)."""
        weight = self._resolve_weight(weight, label_weight)
        checks.check_floating(pred, 'pred', min_dim=1)
        if (self.use_sigmoid and isinstance(weight, Tensor) and checks.is_label_target(pred, target)
                and pred.shape[-1] > 1 and weight.dim() == 1 and weight.numel() == pred.numel() != target.numel()):
            raise checks.GHMArgumentError(
                f'weight of shape {tuple(weight.shape)} holds per-class label weights flattened from '
                f'({target.numel()}, {pred.shape[-1]}), as FSAFHead passes them. GHM-C does not support '
                'FSAFHead: the head sums reduction="none" losses itself and divides by its number of '
                'positives, which would scale GHM-C, already normalised by N through beta (Eq. 8), by '
                'about N / num_pos.')
        if self.use_sigmoid:
            return checks.ghm_c_inputs(pred, target, weight, self.activated)
        checks.check_softmax_inputs(pred, target, weight)
        return target, weight

    def gradient_norm(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                      label_weight: Optional[Tensor] = None, **kwargs):
        """``(g, valid)``: flattened float32 gradient norms and bool validity of the entries ``forward``
        would weigh, for the same inputs (used to plot the gradient density)."""
        target, weight = self._checked_inputs(pred, target, weight, label_weight)
        if not self.use_sigmoid:
            return self._flat(softmax_gradient_norm(pred, target.long()), weight)
        if checks.is_label_target(pred, target):
            target = one_hot(target.long(), pred.shape[-1])
            weight = None if weight is None else weight.unsqueeze(-1)
        if self.activated:
            return self._flat(bce_gradient(pred.detach().float(), target.float()).abs(), weight)
        return self._flat(sigmoid_gradient_norm(pred, target.float()), weight)

    def extra_repr(self) -> str:
        return f'use_sigmoid={self.use_sigmoid}, activated={self.activated}, ' + super().extra_repr()


class GHMR(_GHMLoss):
    """GHM-R: Authentic Smooth L1 weighted by the gradient density harmonizing parameter.

    ``L = sum_i beta_i * ASL1(d_i) / N`` (Eq. 13 of arXiv:1811.05181), ``ASL1(d) = sqrt(d^2 + mu^2) - mu``,
    ``gr = |d| / sqrt(d^2 + mu^2)``, ``N`` = the sum of the label weights; see
    :func:`ghm_mmdet.core.ghm_r_loss`. mmdet 3.3.0's ``GHMR`` exactly, without its loop or host syncs.

    Args:
        mu: ASL1 parameter, > 0.
        bins, momentum, loss_weight, reduction, sync_stats, warm_start: as in :class:`GHMC`.

    Inputs to ``forward``:
        pred, target: ``(N, 4)`` (or any equal shapes) box deltas, any floating dtype.
        weight / label_weight: same shape; > 0 marks a valid entry, and their sum is ``N``.
        avg_factor: accepted and ignored, as in :class:`GHMC` and mmdet.
    """
    stats_label = 'ghm_r'

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0,
                 loss_weight: float = 1.0, reduction: str = 'mean', sync_stats: bool = False,
                 warm_start: bool = False):
        super().__init__(bins, momentum, loss_weight, reduction, GHMR_LAST_EDGE, sync_stats, warm_start)
        self.mu = checks.check_positive(mu, 'mu')

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[int, float, Tensor]] = None,
                reduction_override: Optional[str] = None,
                label_weight: Optional[Tensor] = None) -> Tensor:
        reduction = checks.check_reduction(reduction_override or self.reduction, 'reduction_override')
        weight = self._resolve_weight(weight, label_weight)
        checks.check_ghm_r_inputs(pred, target, weight)
        result = core.ghm_r(pred, target, weight, self._state(pred.device), self.mu, self.momentum,
                            _core_reduction(reduction), self._all_reduce())
        return self._finish(result, reduction)

    def gradient_norm(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                      label_weight: Optional[Tensor] = None, **kwargs):
        """``(g, valid)`` of the entries ``forward`` would weigh, flattened (see :meth:`GHMC.gradient_norm`)."""
        weight = self._resolve_weight(weight, label_weight)
        checks.check_ghm_r_inputs(pred, target, weight)
        return self._flat(asl1_gradient_norm(pred.float() - target.float(), self.mu), weight)

    def extra_repr(self) -> str:
        return f'mu={self.mu}, ' + super().extra_repr()

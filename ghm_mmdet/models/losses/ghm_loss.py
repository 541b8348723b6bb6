"""GHM-C and GHM-R as MMDetection losses: thin modules over :mod:`ghm_mmdet.core` that hold the moving
average as buffers and follow mmdet's loss contract. By default their numbers equal mmdet 3.3.0's
``GHMC``/``GHMR``; the options below are off unless asked for."""
import numbers
from functools import partial
from typing import Optional, Union

import torch
import torch.nn.functional as F
from mmdet.models.losses.utils import weight_reduce_loss
from mmengine import dist
from torch import Tensor, nn

from ghm_mmdet.core import (GHMC_LAST_EDGE, GHMR_LAST_EDGE, asl1_gradient_norm, asl1_loss,
                            bin_indices, harmonized_label_bce, harmonizing_weights,
                            sigmoid_gradient_norm, unit_region_edges)
from ghm_mmdet.core.checks import (check_bins, check_floating, check_labels_in_range,
                                   check_momentum, check_non_negative, check_positive,
                                   check_reduction, check_same_shape)


class _GHMLoss(nn.Module):
    """State and reduction shared by GHM-C and GHM-R.

    Buffers (names as in mmdet, so its published GHM checkpoints load with no missing or unexpected key):
    ``edges`` always; ``acc_sum`` when ``momentum > 0`` or ``warm_start``; ``acc_floor`` with
    ``warm_start`` only.
    """

    def __init__(self, bins, momentum, loss_weight, reduction, last_edge, use_avg_factor,
                 sync_stats, warm_start):
        super().__init__()
        self.bins = check_bins(bins)
        self.momentum = check_momentum(momentum)
        self.loss_weight = check_non_negative(loss_weight, 'loss_weight')
        self.reduction = check_reduction(reduction)
        for name, flag in (('use_avg_factor', use_avg_factor), ('sync_stats', sync_stats),
                           ('warm_start', warm_start)):
            if not isinstance(flag, bool):
                raise TypeError(f'{name} must be a bool, got {flag!r}')
        self.use_avg_factor = use_avg_factor
        self.sync_stats = sync_stats
        self.warm_start = warm_start
        self.register_buffer('edges', unit_region_edges(self.bins, last_edge))
        if self.momentum > 0 or warm_start:
            self.register_buffer('acc_sum', torch.zeros(self.bins))
        if warm_start:
            self.register_buffer('acc_floor', torch.zeros(()))

    def _harmonize(self, index: Tensor, total: Tensor, num_valid: Optional[Tensor] = None,
                   out: Optional[Tensor] = None):
        """Beta per entry from region indices (written to ``out`` if given); updates the
        moving-average buffers in place, with no host sync."""
        all_reduce = None
        if self.sync_stats and dist.get_world_size() > 1:
            all_reduce = dist.all_reduce
        result = harmonizing_weights(
            index, self.bins, total, num_valid=num_valid, momentum=self.momentum,
            acc_sum=getattr(self, 'acc_sum', None), floor=getattr(self, 'acc_floor', None),
            all_reduce=all_reduce, out=out)
        if result.acc_sum is not None:
            self.acc_sum.copy_(result.acc_sum)
        if result.floor is not None:
            self.acc_floor.copy_(result.floor)
        return result

    def _reduce(self, loss: Tensor, weight: Optional[Tensor], total: Tensor, reduction: str,
                avg_factor) -> Tensor:
        """mmdet's ``weight_reduce_loss`` with GHM's normaliser ``N`` (see the class docstrings)."""
        if reduction == 'sum':
            if self.use_avg_factor and avg_factor is not None:
                raise ValueError('avg_factor cannot be used with reduction="sum" when '
                                 'use_avg_factor=True; pass avg_factor=None or use reduction="mean"')
            return weight_reduce_loss(loss, weight, reduction='sum') * self.loss_weight
        if reduction == 'none':
            return weight_reduce_loss(loss, weight, reduction='none') * self.loss_weight
        if self.use_avg_factor and avg_factor is not None:
            normalizer = avg_factor
        else:
            # With synchronised statistics N is the whole batch's; dividing by N / world_size makes the
            # mean over ranks (what DDP does to gradients) equal the single-process loss on that batch.
            normalizer = total.to(loss.dtype)
            if self.sync_stats and dist.get_world_size() > 1:
                normalizer = normalizer / dist.get_world_size()
        return weight_reduce_loss(loss, weight, reduction='mean', avg_factor=normalizer) * self.loss_weight

    @staticmethod
    def _resolve_weight(weight, label_weight):
        if weight is not None and label_weight is not None:
            raise ValueError('pass the per-entry weights as weight or as label_weight, not both')
        return label_weight if weight is None else weight

    @staticmethod
    def _check_avg_factor(avg_factor):
        if avg_factor is None or isinstance(avg_factor, Tensor):
            return
        if isinstance(avg_factor, bool) or not isinstance(avg_factor, numbers.Real):
            raise TypeError(f'avg_factor must be a number or a tensor, got {avg_factor!r}')
        if not avg_factor > 0:
            raise ValueError(f'avg_factor must be > 0, got {avg_factor}')

    def extra_repr(self) -> str:
        return (f'bins={self.bins}, momentum={self.momentum}, loss_weight={self.loss_weight}, '
                f'reduction={self.reduction!r}, use_avg_factor={self.use_avg_factor}, '
                f'sync_stats={self.sync_stats}, warm_start={self.warm_start}')


class GHMC(_GHMLoss):
    """GHM-C: sigmoid binary cross-entropy weighted by the gradient density harmonizing parameter.

    ``L = sum_i beta_i * BCE(x_i, p*_i) / N`` over the valid entries (Eq. 8 of arXiv:1811.05181), where
    ``N`` is the number of valid entries and ``beta_i = N / (GD(g_i) * n)`` with ``g = |sigmoid(x) - p*|``
    binned into ``bins`` unit regions and ``n`` the number of non-empty regions. This is mmdet 3.3.0's
    ``GHMC`` exactly, without its Python loop over bins or its host syncs.

    Args:
        bins: number of unit regions, int >= 1.
        momentum: moving-average parameter in [0, 1); 0 uses this call's counts only.
        use_sigmoid: must be True (GHM-C is defined on sigmoid BCE); kept for config compatibility.
        loss_weight: factor on the loss, >= 0.
        reduction: ``'mean'`` (divide by the normaliser), ``'sum'`` (no division) or ``'none'``
            (per-entry ``beta_i * BCE_i``, whose sum is the ``'sum'`` value).
        use_avg_factor: what ``avg_factor`` means. False (default, mmdet's numbers): the normaliser is
            GHM's own ``N``, because beta is already scaled by ``N``; an ``avg_factor`` from the head
            (RetinaNet passes the number of positives) is checked but not used. True: with
            ``reduction='mean'``, a given ``avg_factor`` replaces ``N`` as the normaliser, as in other
            mmdet losses (beta is unchanged); with ``'sum'`` it is an error.
        sync_stats: all-reduce the bin counts and ``N`` over distributed ranks (mmengine.dist), so the
            gradient density is that of the whole batch rather than per GPU (the paper's definition).
        warm_start: use the seed's warm-started moving average (see
            :func:`ghm_mmdet.core.warm_start_ghm_weights`) instead of mmdet's.

    Inputs to ``forward``:
        pred: ``(N, C)`` logits, any floating dtype (binned and weighted in float32).
        target: ``(N, C)`` binary targets, or ``(N,)`` integer labels in [0, C] (C = background).
        weight / label_weight: same shape as ``target``; > 0 marks a valid entry (its magnitude is not
            used, as in mmdet). ``None`` means all valid.
    """

    def __init__(self, bins: int = 10, momentum: float = 0.0, use_sigmoid: bool = True,
                 loss_weight: float = 1.0, reduction: str = 'mean', use_avg_factor: bool = False,
                 sync_stats: bool = False, warm_start: bool = False):
        if use_sigmoid is not True:
            raise ValueError(f'use_sigmoid must be True: GHM-C is defined on sigmoid binary '
                             f'cross-entropy, got {use_sigmoid!r}')
        super().__init__(bins, momentum, loss_weight, reduction, GHMC_LAST_EDGE, use_avg_factor,
                         sync_stats, warm_start)
        self.use_sigmoid = True

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[int, float, Tensor]] = None,
                reduction_override: Optional[str] = None,
                label_weight: Optional[Tensor] = None) -> Tensor:
        reduction = check_reduction(reduction_override or self.reduction, 'reduction_override')
        self._check_avg_factor(avg_factor)
        weight = self._resolve_weight(weight, label_weight)
        check_floating(pred, 'pred')
        # Eager: the hand-fused label path. Compiled: the plain expression, which Inductor fuses itself
        # (and may recompute in the backward instead of saving the weights).
        if (self._is_label_target(pred, target) and reduction != 'none'
                and not torch.compiler.is_compiling()):
            loss, total = self._loss_from_labels(pred, target, weight)
        else:
            target, weight = self._expand_target(pred, target, weight)
            # weight=None: every entry is valid, and no full-size mask is needed to say so.
            valid = None if weight is None else weight > 0
            index = bin_indices(sigmoid_gradient_norm(pred, target), self.edges, valid)
            num_valid = (pred.new_tensor(pred.numel(), dtype=torch.float64) if valid is None
                         else valid.sum(dtype=torch.float64))
            result = self._harmonize(index, num_valid)
            del index  # free it before the BCE allocates
            # reduction='sum' inside the fused BCE never materialises the per-entry loss.
            loss = F.binary_cross_entropy_with_logits(
                pred.float(), target.float(), weight=result.weights,
                reduction='none' if reduction == 'none' else 'sum')
            total = result.total
        return self._reduce(loss, None, total, reduction, avg_factor)

    @staticmethod
    def _is_label_target(pred: Tensor, target) -> bool:
        return (isinstance(target, Tensor) and target.dim() == pred.dim() - 1
                and not target.is_floating_point() and target.dtype != torch.bool)

    def _loss_from_labels(self, pred: Tensor, labels: Tensor, weight: Optional[Tensor]):
        """Summed loss and ``N`` for integer labels, never building the ``(N, C)`` one-hot target."""
        if labels.shape != pred.shape[:-1]:
            raise ValueError(f'target: integer labels must have shape {tuple(pred.shape[:-1])} for '
                             f'pred {tuple(pred.shape)}, got {tuple(labels.shape)}')
        if weight is not None:
            check_same_shape(weight, 'weight', labels, 'the integer labels')
        num_classes = pred.shape[-1]
        check_labels_in_range(labels, num_classes)
        logits = pred.reshape(-1, num_classes)
        labels = labels.reshape(-1).long()
        if weight is None:
            valid_rows = torch.ones_like(labels, dtype=torch.bool)
        else:
            valid_rows = weight.reshape(-1) > 0
        total = valid_rows.sum(dtype=torch.float64) * num_classes
        loss, result = harmonized_label_bce(logits, labels, valid_rows, self.edges,
                                            partial(self._harmonize, total=total))
        return loss, result.total

    @staticmethod
    def _expand_target(pred: Tensor, target: Tensor, weight: Optional[Tensor]):
        """Binary targets and per-entry weights of ``pred``'s shape, from one-hot or integer targets."""
        if not isinstance(target, Tensor):
            raise TypeError(f'target must be a torch.Tensor, got {type(target).__name__}')
        if target.dim() == pred.dim():
            check_same_shape(target, 'target', pred, 'pred')
            if weight is not None:
                check_same_shape(weight, 'weight', pred, 'pred')
            return target, weight
        if target.dim() != pred.dim() - 1 or target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f'target must be binary targets of the shape of pred {tuple(pred.shape)} '
                             f'or integer labels of shape {tuple(pred.shape[:-1])}, got '
                             f'{target.dtype} of shape {tuple(target.shape)}')
        if target.shape != pred.shape[:-1]:
            raise ValueError(f'target: integer labels must have shape {tuple(pred.shape[:-1])} for '
                             f'pred {tuple(pred.shape)}, got {tuple(target.shape)}')
        if weight is not None:
            check_same_shape(weight, 'weight', target, 'the integer labels')
            weight = weight.unsqueeze(-1).expand(pred.shape)
        num_classes = pred.shape[-1]
        check_labels_in_range(target, num_classes)
        classes = torch.arange(num_classes, device=target.device)
        return target.unsqueeze(-1) == classes, weight


class GHMR(_GHMLoss):
    """GHM-R: Authentic Smooth L1 weighted by the gradient density harmonizing parameter.

    ``L = sum_i beta_i * ASL1(d_i) / N`` (Eq. 13 of arXiv:1811.05181), ``ASL1(d) = sqrt(d^2 + mu^2) - mu``,
    ``gr = |d| / sqrt(d^2 + mu^2)``, ``N`` = the sum of the label weights. mmdet 3.3.0's ``GHMR`` exactly,
    without its loop or host syncs.

    Args:
        mu: ASL1 parameter, > 0.
        bins, momentum, loss_weight, reduction, use_avg_factor, sync_stats, warm_start: as in
            :class:`GHMC`.

    Inputs to ``forward``:
        pred, target: ``(N, 4)`` (or any equal shapes) box deltas, any floating dtype.
        weight / label_weight: same shape; > 0 marks a valid entry, and their sum is ``N``.
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0,
                 loss_weight: float = 1.0, reduction: str = 'mean', use_avg_factor: bool = False,
                 sync_stats: bool = False, warm_start: bool = False):
        super().__init__(bins, momentum, loss_weight, reduction, GHMR_LAST_EDGE, use_avg_factor,
                         sync_stats, warm_start)
        self.mu = check_positive(mu, 'mu')

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[int, float, Tensor]] = None,
                reduction_override: Optional[str] = None,
                label_weight: Optional[Tensor] = None) -> Tensor:
        reduction = check_reduction(reduction_override or self.reduction, 'reduction_override')
        self._check_avg_factor(avg_factor)
        weight = self._resolve_weight(weight, label_weight)
        check_floating(pred, 'pred')
        check_same_shape(target, 'target', pred, 'pred')
        if weight is None:
            weight = torch.ones_like(pred, dtype=torch.float32)
        check_same_shape(weight, 'weight', pred, 'pred')

        diff = pred.float() - target.float()
        valid = weight > 0
        index = bin_indices(asl1_gradient_norm(diff, self.mu), self.edges, valid)
        result = self._harmonize(index, weight.sum(dtype=torch.float64),
                                 num_valid=valid.sum(dtype=torch.float64))
        return self._reduce(asl1_loss(diff, self.mu), result.weights, result.total, reduction,
                            avg_factor)

    def extra_repr(self) -> str:
        return f'mu={self.mu}, ' + super().extra_repr()

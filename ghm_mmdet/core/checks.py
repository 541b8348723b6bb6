"""Argument checks shared by the core API and the loss modules: each error names the argument, the value
and what is accepted. They run once per construction or call, never inside the per-entry arithmetic.

The tensors are named as in mmdet's loss contract, which the core's functions share: ``pred``, ``target``,
``weight`` (an entry takes part where ``weight > 0``) and the moving-average state ``acc_sum``.
"""
import numbers
from typing import Optional, Tuple

import torch
from torch import Tensor

from .compat import assert_async, check_traced_route, is_compiling
from .density import GHMState

REDUCTIONS = ('none', 'mean', 'sum')


class GHMArgumentError(ValueError, AssertionError):
    """An argument given to a GHM loss is outside what it accepts; the message names the argument, the value
    and what is accepted.

    A ``ValueError``, and also an ``AssertionError`` because mmdet's loss contract (and its unit tests)
    asserts on a bad ``reduction_override``. The tools print it as one line: it is always a user's value.
    """


class GHMArgumentTypeError(GHMArgumentError, TypeError):
    """A :class:`GHMArgumentError` for an argument of the wrong type (also a ``TypeError``)."""


def check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
        raise GHMArgumentTypeError(f'bins must be an int >= 1, got {bins!r} of type {type(bins).__name__}')
    if bins < 1:
        raise GHMArgumentError(f'bins must be an int >= 1, got {bins}')
    return int(bins)


def check_momentum(momentum, name: str = 'momentum') -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise GHMArgumentTypeError(f'{name} must be a float in [0, 1), got {momentum!r} of type '
                                   f'{type(momentum).__name__}')
    if not 0.0 <= float(momentum) < 1.0:
        raise GHMArgumentError(f'{name} must be a float in [0, 1), got {momentum}')
    return float(momentum)


def check_positive(value, name: str) -> float:
    return _check_finite_real(value, name, strictly_positive=True)


def check_non_negative(value, name: str) -> float:
    return _check_finite_real(value, name, strictly_positive=False)


def _check_finite_real(value, name: str, strictly_positive: bool) -> float:
    accepted = 'a finite float > 0' if strictly_positive else 'a finite float >= 0'
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise GHMArgumentTypeError(f'{name} must be {accepted}, got {value!r} of type {type(value).__name__}')
    value = float(value)
    in_range = value > 0.0 if strictly_positive else value >= 0.0
    if not in_range or value == float('inf'):  # NaN fails both comparisons
        raise GHMArgumentError(f'{name} must be {accepted}, got {value}')
    return value


def check_reduction(reduction, name: str = 'reduction') -> str:
    if reduction not in REDUCTIONS:
        raise GHMArgumentError(f'{name} must be one of {REDUCTIONS}, got {reduction!r}')
    return reduction


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise GHMArgumentTypeError(f'{name} must be a bool, got {value!r}')
    return value


def check_options(bins, momentum, reduction) -> Tuple[int, float, str]:
    """The options every GHM loss takes, checked: ``(bins, momentum, reduction)``."""
    return check_bins(bins), check_momentum(momentum), check_reduction(reduction)


def check_floating(tensor, name: str, min_dim: int = 0) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise GHMArgumentTypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if not tensor.is_floating_point():
        raise GHMArgumentTypeError(f'{name} must be a floating-point tensor, got dtype {tensor.dtype}')
    if tensor.dim() < min_dim:
        raise GHMArgumentError(f'{name} must have at least {min_dim} dimension(s) (..., C), got a '
                               f'{tensor.dim()}-d tensor of shape {tuple(tensor.shape)}')
    return tensor


def _check_on_host_or_assert(in_range: Tensor, tensor: Tensor, message: str) -> None:
    """Raise naming a bad value on the CPU; on an accelerator, or while compiling, a device-side
    assertion, so that the check never waits for the device."""
    if tensor.device.type == 'cpu' and not is_compiling():
        if not bool(in_range.all()):
            raise GHMArgumentError(f'{message}, got {tensor[~in_range][0].item()}')
    else:
        if is_compiling():
            check_traced_route()  # before an op that an old torch cannot trace
        assert_async(in_range.all(), message)


def check_unit_interval(target: Tensor) -> None:
    """Binary or soft targets must lie in [0, 1] (NaN is refused too): outside, ``|sigmoid(x) - t|`` falls
    outside every unit region and the entry would silently count for nothing. Checked as labels are."""
    if target.dtype == torch.bool:
        return
    _check_on_host_or_assert((target >= 0) & (target <= 1), target,
                             'target: binary or soft targets must be in [0, 1]')


def check_same_shape(tensor: Tensor, name: str, reference: Tensor, reference_name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise GHMArgumentTypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if tensor.shape != reference.shape:
        raise GHMArgumentError(f'{name} must have the shape of {reference_name} {tuple(reference.shape)}, '
                               f'got {tuple(tensor.shape)} (no broadcasting)')


def check_labels_in_range(labels: Tensor, num_classes: int, background: bool = True) -> None:
    """Integer labels must lie in [0, num_classes] (with ``background``, ``num_classes`` is background).

    On the CPU this is checked at once and raises :class:`GHMArgumentError` naming a bad label. On an
    accelerator, or while compiling, it becomes a device-side assertion so that it never waits for the
    device.
    """
    accepted = f'[0, {num_classes}]' + (f' ({num_classes} = background)' if background else '')
    _check_on_host_or_assert((labels >= 0) & (labels <= num_classes), labels,
                             f'target: integer labels must be in {accepted}')


def is_label_target(pred: Tensor, target) -> bool:
    """Whether ``target`` holds integer class labels (one dimension fewer than ``pred``)."""
    return (isinstance(target, Tensor) and target.dim() == pred.dim() - 1
            and not target.is_floating_point() and target.dtype != torch.bool)


def ghm_c_inputs(pred, target, weight: Optional[Tensor],
                 activated: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Sigmoid GHM-C's ``target`` and ``weight``, checked against ``(..., C)`` floating ``pred`` and brought to
    one of two forms: integer labels ``(...)`` with a weight ``(...)`` per row, or targets of ``pred``'s shape
    with a weight of that shape.

    Accepted ``target``: ``(..., C)`` binary or soft targets in [0, 1] (float or bool); ``(...)`` integer labels
    in ``[0, C]`` (``C`` = background); or QualityFocalLoss's ``(labels, scores)``, whose soft target is the
    score at the label and 0 elsewhere (:func:`quality_target`). Accepted ``weight``: ``None``, the shape of
    the target, or one weight per row, ``(...)`` or ``(..., 1)``, broadcast over the classes (FocalLoss's and
    QualityFocalLoss's ``(N,)``, YOLOv3's ``(N, A, 1)``). Labels become one-hot where the weights are per entry
    or ``activated`` (the label route works on logits).
    """
    check_floating(pred, 'pred', min_dim=1)
    rows, num_classes = tuple(pred.shape[:-1]), pred.shape[-1]
    if isinstance(target, (tuple, list)):
        target = quality_target(pred, target)
    elif isinstance(target, Tensor) and target.dim() == pred.dim():
        check_same_shape(target, 'target', pred, 'pred')
        check_unit_interval(target)
    elif is_label_target(pred, target) and tuple(target.shape) == rows:
        check_labels_in_range(target, num_classes)
        if activated or (isinstance(weight, Tensor) and weight.shape == pred.shape):
            target = (target.unsqueeze(-1) == torch.arange(num_classes, device=target.device)).float()
    else:
        raise GHMArgumentError(f'target must be binary or soft targets of the shape of pred {tuple(pred.shape)}, '
                               f'integer labels of shape {rows}, or QualityFocalLoss\'s (labels, scores) of '
                               f'shape {rows} each, got {_describe(target)}')
    if weight is None:
        return target, None
    if not isinstance(weight, Tensor):
        raise GHMArgumentTypeError(f'weight must be a torch.Tensor, got {type(weight).__name__}')
    shape = tuple(weight.shape)
    if target.dim() == pred.dim() and shape == tuple(pred.shape):
        return target, weight
    if shape in (rows, rows + (1,)):
        weight = weight.reshape(rows)
        return target, (weight.unsqueeze(-1).expand(pred.shape) if target.dim() == pred.dim() else weight)
    raise GHMArgumentError(f'weight must have the shape of pred {tuple(pred.shape)}, or one weight per row of '
                           f'shape {rows} or {rows + (1,)}, got {shape}')


def quality_target(pred: Tensor, target) -> Tensor:
    """QualityFocalLoss's ``(labels, scores)`` as GHM-C's soft target of ``pred``'s shape: ``scores`` at the
    label, 0 elsewhere and on background rows (label ``C``); ``g = |sigmoid(x) - t|`` as Eq. 3's, with a soft
    ``p*`` (GFL, TOOD and RTMDet's IoU-aware targets)."""
    if len(target) != 2:
        raise GHMArgumentError(f"target given as a {type(target).__name__} must be QualityFocalLoss's (labels, "
                               f'scores), got {len(target)} elements')
    labels, scores = target
    rows, num_classes = tuple(pred.shape[:-1]), pred.shape[-1]
    if not is_label_target(pred, labels) or tuple(labels.shape) != rows:
        raise GHMArgumentError(f'target (labels, scores): labels must be integer labels of shape {rows}, got '
                               f'{_describe(labels)}')
    check_floating(scores, 'target (labels, scores): scores')
    if tuple(scores.shape) != rows:
        raise GHMArgumentError(f'target (labels, scores): scores must have shape {rows}, got '
                               f'{tuple(scores.shape)}')
    check_labels_in_range(labels, num_classes)
    check_unit_interval(scores)
    positive = labels < num_classes
    soft = torch.zeros(pred.shape, dtype=torch.float32, device=pred.device)
    return soft.scatter(-1, labels.clamp(max=num_classes - 1).long().unsqueeze(-1),
                        torch.where(positive, scores.float(), 0.0).unsqueeze(-1))


def check_softmax_inputs(pred, target, weight: Optional[Tensor]) -> None:
    """Softmax GHM-C: ``(..., K)`` floating ``pred``, integer labels of shape ``(...)`` in ``[0, K - 1]``,
    ``weight`` of their shape."""
    check_floating(pred, 'pred', min_dim=1)
    if not is_label_target(pred, target) or target.shape != pred.shape[:-1]:
        raise GHMArgumentError(f'target must be integer labels of shape {tuple(pred.shape[:-1])} for softmax '
                               f'pred {tuple(pred.shape)}, got {_describe(target)}')
    if weight is not None:
        check_same_shape(weight, 'weight', target, 'target')
    check_labels_in_range(target, pred.shape[-1] - 1, background=False)


def check_ghm_r_inputs(pred, target, weight: Optional[Tensor]) -> None:
    """GHM-R: floating ``pred``, ``target`` and ``weight`` of its shape."""
    check_floating(pred, 'pred')
    check_same_shape(target, 'target', pred, 'pred')
    if weight is not None:
        check_same_shape(weight, 'weight', pred, 'pred')


def _describe(tensor) -> str:
    if isinstance(tensor, Tensor):
        return f'{tensor.dtype} of shape {tuple(tensor.shape)}'
    return f'a {type(tensor).__name__}'


def check_state(acc_sum: Optional[Tensor], bins: int, device, floor: Optional[Tensor] = None,
                name: str = 'acc_sum') -> GHMState:
    """The state to start from: mmdet's zeros for ``acc_sum=None``, else ``acc_sum`` (and ``floor``) after
    checking its shape."""
    if acc_sum is None:
        return GHMState.zeros(bins, device)
    check_floating(acc_sum, name)
    if acc_sum.shape != (bins,):
        raise GHMArgumentError(f'{name} must have shape ({bins},) for bins={bins}, got {tuple(acc_sum.shape)}')
    return GHMState(acc_sum, floor)

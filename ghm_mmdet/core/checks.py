"""Argument checks shared by the core API and the loss modules: each error names the argument, the value
and what is accepted. They run once per construction or call, never inside the per-entry arithmetic."""
import numbers

import torch
from torch import Tensor

REDUCTIONS = ('none', 'mean', 'sum')


def check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
        raise TypeError(f'bins must be an int >= 1, got {bins!r} of type {type(bins).__name__}')
    if bins < 1:
        raise ValueError(f'bins must be an int >= 1, got {bins}')
    return int(bins)


def check_momentum(momentum, name: str = 'momentum') -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f'{name} must be a float in [0, 1), got {momentum!r} of type '
                        f'{type(momentum).__name__}')
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f'{name} must be a float in [0, 1), got {momentum}')
    return float(momentum)


def check_positive(value, name: str) -> float:
    return _check_finite_real(value, name, strictly_positive=True)


def check_non_negative(value, name: str) -> float:
    return _check_finite_real(value, name, strictly_positive=False)


def _check_finite_real(value, name: str, strictly_positive: bool) -> float:
    accepted = 'a finite float > 0' if strictly_positive else 'a finite float >= 0'
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be {accepted}, got {value!r} of type {type(value).__name__}')
    value = float(value)
    in_range = value > 0.0 if strictly_positive else value >= 0.0
    if not in_range or value == float('inf'):  # NaN fails both comparisons
        raise ValueError(f'{name} must be {accepted}, got {value}')
    return value


def check_reduction(reduction, name: str = 'reduction') -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f'{name} must be one of {REDUCTIONS}, got {reduction!r}')
    return reduction


def check_floating(tensor, name: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if not tensor.is_floating_point():
        raise TypeError(f'{name} must be a floating-point tensor, got dtype {tensor.dtype}')
    return tensor


def check_same_shape(tensor: Tensor, name: str, reference: Tensor, reference_name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if tensor.shape != reference.shape:
        raise ValueError(f'{name} must have the shape of {reference_name} {tuple(reference.shape)}, '
                         f'got {tuple(tensor.shape)} (no broadcasting)')


def check_labels_in_range(labels: Tensor, num_classes: int, name: str = 'target') -> None:
    """Integer labels must lie in [0, num_classes] (``num_classes`` is background).

    On the CPU this is checked at once and raises ``ValueError`` naming a bad label. On an accelerator,
    or while compiling, it becomes a device-side assertion so that it never waits for the device.
    """
    in_range = (labels >= 0) & (labels <= num_classes)
    message = f'{name}: integer labels must be in [0, {num_classes}] ({num_classes} = background)'
    if labels.device.type == 'cpu' and not torch.compiler.is_compiling():
        if not bool(in_range.all()):
            bad = labels[~in_range][0]
            raise ValueError(f'{message}, got {int(bad)}')
    else:
        torch._assert_async(in_range.all(), message)

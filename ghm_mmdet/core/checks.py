"""Argument checks shared by the core API and the loss modules: each error names the argument, the value
and what is accepted. They run once per construction or call, never inside the per-entry arithmetic."""
import numbers

import torch
from torch import Tensor

from .compat import assert_async, check_traced_route, is_compiling

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


def check_floating(tensor, name: str, min_dim: int = 0) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise GHMArgumentTypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if not tensor.is_floating_point():
        raise GHMArgumentTypeError(f'{name} must be a floating-point tensor, got dtype {tensor.dtype}')
    if tensor.dim() < min_dim:
        raise GHMArgumentError(f'{name} must have at least {min_dim} dimension(s) (..., C), got a '
                               f'{tensor.dim()}-d tensor of shape {tuple(tensor.shape)}')
    return tensor


def check_bool_mask(mask, name: str) -> None:
    if not isinstance(mask, Tensor):
        raise GHMArgumentTypeError(f'{name} must be a torch.Tensor, got {type(mask).__name__}')
    if mask.dtype != torch.bool:
        raise GHMArgumentTypeError(f'{name} must be a bool tensor (True = takes part), got dtype {mask.dtype}; '
                                   f'for weights pass {name}=weights > 0')


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


def check_unit_interval(targets: Tensor, name: str = 'targets') -> None:
    """Binary or soft targets must lie in [0, 1] (NaN is refused too): outside, ``|sigmoid(x) - t|`` falls
    outside every unit region and the entry would silently count for nothing. Checked as labels are."""
    if targets.dtype == torch.bool:
        return
    _check_on_host_or_assert((targets >= 0) & (targets <= 1), targets,
                             f'{name}: binary or soft targets must be in [0, 1]')


def check_same_shape(tensor: Tensor, name: str, reference: Tensor, reference_name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise GHMArgumentTypeError(f'{name} must be a torch.Tensor, got {type(tensor).__name__}')
    if tensor.shape != reference.shape:
        raise GHMArgumentError(f'{name} must have the shape of {reference_name} {tuple(reference.shape)}, '
                         f'got {tuple(tensor.shape)} (no broadcasting)')


def check_labels_in_range(labels: Tensor, num_classes: int, name: str = 'target',
                          background: bool = True) -> None:
    """Integer labels must lie in [0, num_classes] (with ``background``, ``num_classes`` is background).

    On the CPU this is checked at once and raises :class:`GHMArgumentError` naming a bad label. On an
    accelerator, or while compiling, it becomes a device-side assertion so that it never waits for the
    device.
    """
    accepted = f'[0, {num_classes}]' + (f' ({num_classes} = background)' if background else '')
    _check_on_host_or_assert((labels >= 0) & (labels <= num_classes), labels,
                             f'{name}: integer labels must be in {accepted}')

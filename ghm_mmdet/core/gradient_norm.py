"""Gradient norms of the two GHM losses, and the ASL1 loss itself.

Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181).
Everything here is plain PyTorch, computed in float32 whatever the input dtype, and detached where the
paper treats the quantity as a constant.
"""
import torch
from torch import Tensor


def sigmoid_gradient_norm(logits: Tensor, targets: Tensor) -> Tensor:
    """Gradient norm of sigmoid binary cross-entropy, ``g = |sigmoid(x) - p*|`` (Eq. 3).

    Args:
        logits: ``(...)`` floating logits ``x`` of any dtype.
        targets: ``(...)`` targets ``p*`` in [0, 1], same shape as ``logits`` (any dtype, bool included).

    Returns:
        ``(...)`` float32 tensor in [0, 1] (NaN where ``logits`` is NaN), detached from the graph.
    """
    return (logits.detach().float().sigmoid() - targets.float()).abs_()


def asl1_loss(diff: Tensor, mu: float) -> Tensor:
    """Authentic Smooth L1 loss ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` (Eq. 11), elementwise.

    Args:
        diff: ``(...)`` floating tensor ``d = pred - target``; keeps its graph.
        mu: positive float; the loss is quadratic for ``|d| << mu`` and linear beyond.

    Returns:
        ``(...)`` tensor of the dtype of ``diff``.
    """
    return torch.sqrt(diff * diff + mu * mu) - mu


def asl1_gradient_norm(diff: Tensor, mu: float) -> Tensor:
    """Gradient norm of ASL1, ``gr = |d| / sqrt(d^2 + mu^2)`` (Eq. 12), in [0, 1).

    Args:
        diff: ``(...)`` floating tensor ``d = pred - target`` of any dtype.
        mu: positive float, as in :func:`asl1_loss`.

    Returns:
        ``(...)`` float32 tensor, detached from the graph (NaN where ``diff`` is not finite).
    """
    d = diff.detach().float()
    return d.abs() / torch.sqrt(d * d + mu * mu)

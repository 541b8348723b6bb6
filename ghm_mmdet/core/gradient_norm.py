"""The gradient norm ``g`` of each GHM loss, written once: every route, the modules' ``gradient_norm`` and the
analysis call these. Also the ASL1 loss itself.

Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181). Computed in float32
whatever the input dtype, and detached where the paper treats the quantity as a constant.
"""
from typing import Optional

import torch
from torch import Tensor


def bce_gradient(probs: Tensor, targets: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """The gradient of binary cross-entropy with respect to the logit, ``p - p*`` with ``p = sigmoid(x)``; its
    absolute value is Eq. 3's gradient norm. Differentiable (the label route's double backward goes through it).

    Args:
        probs: ``(...)`` float32 probabilities ``p``.
        targets: ``(...)`` float32 targets ``p*`` in [0, 1], broadcastable to ``probs``.
        out: optional float32 tensor to write into; ``probs`` itself saves the chunked passes an allocation.

    Returns:
        ``(...)`` float32 tensor in [-1, 1].
    """
    return torch.sub(probs, targets, out=out)


def sigmoid_gradient_norm(logits: Tensor, targets: Tensor) -> Tensor:
    """Gradient norm of sigmoid binary cross-entropy, ``g = |sigmoid(x) - p*|`` (Eq. 3), detached.

    Bit-identical to mmdet's ``GHMC`` (``abs(pred.sigmoid() - target)``), so both bin every entry alike.

    Args:
        logits: ``(...)`` floating logits ``x`` of any dtype.
        targets: as in :func:`bce_gradient`.

    Returns:
        ``(...)`` float32 tensor in [0, 1] (NaN where ``logits`` is NaN).
    """
    probs = torch.sigmoid(logits.detach().float())
    return bce_gradient(probs, targets, out=probs).abs_()


def softmax_gradient_norm(logits: Tensor, labels: Tensor) -> Tensor:
    """Gradient norm of softmax cross-entropy, ``g = 1 - softmax(x)[y]``: half the L1 norm of its gradient
    ``softmax(x) - onehot(y)``, in [0, 1] as Eq. 3's.

    Args:
        logits: ``(..., K)`` floating logits of any dtype.
        labels: ``(...)`` int64 labels in ``[0, K - 1]``.

    Returns:
        ``(...)`` float32 tensor, detached.
    """
    probs = torch.softmax(logits.detach().float(), dim=-1)
    return 1.0 - probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


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

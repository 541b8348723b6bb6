"""GHM-C from integer class labels without materialising the one-hot target.

RetinaNet-style heads pass ``(N,)`` labels for ``(N, C)`` logits, about 1% of them positive. With binary
targets ``t``, the gradient norm is ``g = p`` except at the one positive class of each anchor, where it is
``1 - p``; the BCE is ``softplus(x)`` except there, where it is ``softplus(-x)``. Both are handled by
``O(N)`` gathers at ``(i, label_i)``, so the ``O(N * C)`` work is a few passes, and the largest saved
tensor is the weights (peak extra memory about twice the logits).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from .density import bin_indices


def _positive_entries(labels: Tensor, num_classes: int):
    """``(rows, cols, is_positive)`` of the ``(i, label_i)`` entries; background rows point at column
    ``C - 1`` with ``is_positive`` False, so every tensor has the static shape ``(N,)``."""
    rows = torch.arange(labels.numel(), device=labels.device)
    cols = labels.clamp(max=num_classes - 1)
    return rows, cols, labels < num_classes


def label_bin_indices(logits: Tensor, labels: Tensor, valid_rows: Tensor, edges: Tensor) -> Tensor:
    """Region of every ``(anchor, class)`` entry for sigmoid BCE with integer labels.

    Args:
        logits: ``(N, C)`` floating logits.
        labels: ``(N,)`` int64 labels in [0, C]; ``C`` is background (all targets 0).
        valid_rows: ``(N,)`` bool, anchors whose entries take part.
        edges: ``(bins + 1,)`` float32 edges.

    Returns:
        ``(N, C)`` int32 regions in ``[0, bins]``, equal to
        ``bin_indices(sigmoid_gradient_norm(logits, one_hot(labels)), edges, valid)``.
    """
    num_classes = logits.shape[-1]
    gradient_norm = torch.sigmoid(logits.detach().float())
    rows, cols, positive = _positive_entries(labels, num_classes)
    at_label = gradient_norm[rows, cols]
    gradient_norm[rows, cols] = torch.where(positive, 1.0 - at_label, at_label)
    # +inf lands in the discarded region, like NaN.
    gradient_norm.masked_fill_(~valid_rows.unsqueeze(-1), float('inf'))
    return bin_indices(gradient_norm, edges)


class _WeightedLabelBCE(torch.autograd.Function):
    """``sum_ij w_ij * BCE(x_ij, onehot(labels)_ij)``; saves only ``w`` (and its inputs)."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        num_classes = logits.shape[-1]
        x = logits.float()
        rows, cols, positive = _positive_entries(labels, num_classes)
        loss = F.softplus(x)
        at_label = x[rows, cols]
        loss[rows, cols] = torch.where(positive, F.softplus(-at_label), loss[rows, cols])
        ctx.save_for_backward(logits, labels, weights)
        return loss.mul_(weights).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        logits, labels, weights = ctx.saved_tensors
        rows, cols, positive = _positive_entries(labels, logits.shape[-1])
        grad = torch.sigmoid(logits.float())
        grad[rows, cols] = grad[rows, cols] - positive.float()
        grad.mul_(weights).mul_(grad_output)
        return grad.to(logits.dtype), None, None


def weighted_label_bce(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """Sum of ``weights * BCE(logits, one_hot(labels))`` without building the one-hot target.

    Args:
        logits: ``(N, C)`` floating logits (any dtype; computed in float32).
        labels: ``(N,)`` int64 labels in [0, C], ``C`` = background.
        weights: ``(N, C)`` float32 per-entry weights (constants: no gradient flows to them).

    Returns:
        float32 scalar; its gradient w.r.t. ``logits`` is ``weights * (sigmoid(x) - t)``, as
        ``F.binary_cross_entropy_with_logits(..., weight=weights, reduction='sum')`` gives.
    """
    return _WeightedLabelBCE.apply(logits, labels, weights.detach())

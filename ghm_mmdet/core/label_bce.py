"""GHM-C from integer class labels without materialising the one-hot target.

RetinaNet-style heads pass ``(N,)`` labels for ``(N, C)`` logits, about 1% of them positive. With binary
targets ``t``, the gradient norm is ``g = p`` except at the one positive class of each anchor, where it is
``1 - p``; the BCE is ``softplus(x)`` except there, where it is ``softplus(-x)``. Both are handled by
``O(N)`` gathers at ``(i, label_i)``, so the ``O(N * C)`` work is a few passes over memory. Large
temporaries are reused once dead (allocating, i.e. page-faulting, a fresh ``N * C`` buffer costs several
times a pass over one), and only the weights are saved for the backward: the peak extra memory is about
twice the logits.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .density import bin_indices
from .harmonize import HarmonizedWeights


def _label_entries(labels: Tensor, num_classes: int) -> Tuple[Tensor, Tensor]:
    """``(flat_index, is_positive)``: the position of ``(i, label_i)`` in the flattened ``(N, C)``
    tensor, and whether the label is a class. Background rows point at column ``C - 1`` with
    ``is_positive`` False, so both have the static shape ``(N,)``."""
    rows = torch.arange(labels.numel(), device=labels.device)
    return rows * num_classes + labels.clamp(max=num_classes - 1), labels < num_classes


def _label_gradient_norm(logits: Tensor, entries: Tuple[Tensor, Tensor], valid_rows: Tensor) -> Tensor:
    """``(N, C)`` float32 ``|sigmoid(x) - t|``, +inf on rows that are not valid (never counted)."""
    gradient_norm = torch.sigmoid(logits.detach().float())
    flat_index, positive = entries
    flat = gradient_norm.view(-1)
    at_label = flat[flat_index]
    flat[flat_index] = torch.where(positive, 1.0 - at_label, at_label)
    return gradient_norm.masked_fill_(~valid_rows.unsqueeze(-1), float('inf'))


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
    entries = _label_entries(labels, logits.shape[-1])
    return bin_indices(_label_gradient_norm(logits, entries, valid_rows), edges)


def harmonized_label_bce(logits: Tensor, labels: Tensor, valid_rows: Tensor, edges: Tensor,
                         harmonize: Callable[..., HarmonizedWeights]
                         ) -> Tuple[Tensor, HarmonizedWeights]:
    """GHM-C's summed loss ``sum_ij beta_ij * BCE(x_ij, onehot(labels)_ij)`` from integer labels.

    Args:
        logits: ``(N, C)`` floating logits (any dtype; computed in float32).
        labels: ``(N,)`` int64 labels in [0, C], ``C`` = background.
        valid_rows: ``(N,)`` bool, anchors whose entries take part.
        edges: ``(bins + 1,)`` float32 edges.
        harmonize: ``harmonize(index, out=buffer)`` returning :class:`HarmonizedWeights`, e.g.
            :func:`harmonizing_weights` with its state bound; it may update that state.

    Returns:
        ``(loss_sum, harmonized)``: float32 scalar whose gradient is ``beta * (sigmoid(x) - t)``, and
        the weights with ``N`` and the new state.
    """
    flat_index, positive = _label_entries(labels, logits.shape[-1])
    gradient_norm = _label_gradient_norm(logits, (flat_index, positive), valid_rows)
    index = bin_indices(gradient_norm, edges)
    harmonized = harmonize(index, out=gradient_norm)  # the norms are dead once binned
    loss = _WeightedLabelBCE.apply(logits, flat_index, positive, harmonized.weights, index)
    return loss, harmonized


class _WeightedLabelBCE(torch.autograd.Function):
    """``sum_ij w_ij * BCE(x_ij, onehot(labels)_ij)``; saves only ``w`` (and its inputs)."""

    @staticmethod
    def forward(ctx, logits: Tensor, flat_index: Tensor, positive: Tensor, weights: Tensor,
                scratch: Optional[Tensor] = None) -> Tensor:
        x = logits.float()
        if scratch is not None and scratch.element_size() == 4 and scratch.numel() == x.numel():
            # The dead int32 region indices hold the per-entry loss: no fresh N * C allocation.
            loss = scratch.view(torch.float32).view(x.shape)
            torch.ops.aten.softplus.out(x, 1, 20, out=loss)
        else:
            loss = F.softplus(x)
        flat = loss.view(-1)
        flat[flat_index] = torch.where(positive, F.softplus(-x.reshape(-1)[flat_index]),
                                       flat[flat_index])
        ctx.save_for_backward(logits, flat_index, positive, weights)
        return loss.mul_(weights).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        logits, flat_index, positive, weights = ctx.saved_tensors
        grad = torch.sigmoid(logits.float())
        flat = grad.view(-1)
        flat[flat_index] = flat[flat_index] - positive.float()
        grad.mul_(weights).mul_(grad_output)
        return grad.to(logits.dtype), None, None, None, None


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
    flat_index, positive = _label_entries(labels, logits.shape[-1])
    return _WeightedLabelBCE.apply(logits, flat_index, positive, weights.detach(), None)

"""Eager GHM-C from integer class labels without materialising the one-hot target.

RetinaNet-style heads pass ``(N,)`` labels for ``(N, C)`` logits, about 1% of them positive. With binary
targets ``t``, the gradient norm is ``g = p`` except at the one positive class of each anchor, where it is
``1 - p``; the BCE is ``softplus(x)`` except there, where it is ``softplus(-x)``. Both are handled by
``O(N)`` gathers at ``(i, label_i)``, so the ``O(N * C)`` work is a few passes over memory. Large
temporaries are reused once dead (allocating, i.e. page-faulting, a fresh ``N * C`` buffer costs several
times a pass over one), and only the weights are saved for the backward: the peak extra memory is about
twice the logits.

The loss value is ``softplus`` of the logit, which is more accurate than
``binary_cross_entropy_with_logits`` for very confident logits (at ``|x| ~ 12`` the latter is off by about
1.4e-5 relative, because it adds ``log1p(exp(-|x|))`` to ``max(x, 0) - x * t`` in float32).
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .density import bin_counts, bin_indices, gather_weights, weight_table
from .harmonize import Density

#: Gradient norms below this are "easy" examples, above 1 minus it "outliers" (Sec. 3.1 of the paper).
EASY_BELOW = 0.1
OUTLIER_ABOVE = 0.9


def label_entries(labels: Tensor, num_classes: int) -> Tuple[Tensor, Tensor]:
    """``(flat_index, is_positive)``: the position of ``(i, label_i)`` in the flattened ``(N, C)``
    tensor, and whether the label is a class. Background rows point at column ``C - 1`` with
    ``is_positive`` False, so both have the static shape ``(N,)``."""
    rows = torch.arange(labels.numel(), device=labels.device)
    return rows * num_classes + labels.clamp(max=num_classes - 1), labels < num_classes


def label_gradient_norm(logits: Tensor, flat_index: Tensor, positive: Tensor,
                        valid_rows: Optional[Tensor]) -> Tensor:
    """``(N, C)`` contiguous float32 ``|sigmoid(x) - t|``, +inf on rows that are not valid (never counted).

    ``logits`` may have any layout: the result is written into a fresh contiguous buffer.
    """
    gradient_norm = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    torch.sigmoid(logits.detach().float(), out=gradient_norm)
    flat = gradient_norm.view(-1)
    at_label = flat[flat_index]
    flat[flat_index] = torch.where(positive, 1.0 - at_label, at_label)
    if valid_rows is not None:
        gradient_norm.masked_fill_(~valid_rows.unsqueeze(-1), float('inf'))
    return gradient_norm


def harmonized_label_bce(logits: Tensor, labels: Tensor, valid_rows: Optional[Tensor], edges: Tensor,
                         harmonize: Callable[[Tensor], Density], record_shares: bool = False
                         ) -> Tuple[Tensor, Density, Optional[Tensor]]:
    """GHM-C's summed loss ``sum_ij beta_ij * BCE(x_ij, onehot(labels)_ij)`` from integer labels.

    Args:
        logits: ``(N, C)`` floating logits (any dtype and layout; computed in float32).
        labels: ``(N,)`` int64 labels in [0, C], ``C`` = background.
        valid_rows: ``(N,)`` bool, anchors whose entries take part, or ``None`` (all).
        edges: ``(bins + 1,)`` float32 edges.
        harmonize: maps the ``(bins,)`` counts to a :class:`Density`.
        record_shares: also return the sums of ``beta * BCE`` over all entries, over ``g < 0.1`` and over
            ``g > 0.9`` (three more passes, for statistics).

    Returns:
        ``(loss_sum, density, shares)``: float32 scalar whose gradient is ``beta * (sigmoid(x) - t)``,
        the density, and ``None`` or the ``(3,)`` float64 shares.
    """
    flat_index, positive = label_entries(labels, logits.shape[-1])
    gradient_norm = label_gradient_norm(logits, flat_index, positive, valid_rows)
    index = bin_indices(gradient_norm, edges)
    masks = (gradient_norm < EASY_BELOW, gradient_norm > OUTLIER_ABOVE) if record_shares else None
    density = harmonize(bin_counts(index, edges.numel() - 1))
    weights = gather_weights(weight_table(density.beta), index, out=gradient_norm)  # norms are dead
    with torch.no_grad():
        sums = _weighted_label_bce_sums(logits, flat_index, positive, weights, index, masks)
    loss = _WeightedLabelBCE.apply(logits, sums[0], flat_index, positive, weights)
    return loss, density, (torch.stack(sums).double() if record_shares else None)


def _weighted_label_bce_sums(logits: Tensor, flat_index: Tensor, positive: Tensor, weights: Tensor,
                             scratch: Tensor, masks=None):
    """``sum(weights * BCE)`` (and its sums over ``masks``); the per-entry loss goes into the dead int32
    ``scratch`` (the region indices), so there is no fresh ``N * C`` allocation."""
    x = logits.detach().float()
    loss = scratch.view(torch.float32).view(x.shape)
    torch.ops.aten.softplus.out(x, 1, 20, out=loss)
    flat = loss.view(-1)
    flat[flat_index] = torch.where(positive, F.softplus(-x.reshape(-1)[flat_index]), flat[flat_index])
    loss.mul_(weights)
    sums = [loss.sum()]
    if masks is not None:
        sums += [torch.where(mask, loss, 0.0).sum() for mask in masks]
    return sums


class _WeightedLabelBCE(torch.autograd.Function):
    """Attaches the gradient ``weights * (sigmoid(x) - onehot(labels))`` to a precomputed loss sum.

    Saves only the weights besides its inputs, and writes into no input. Its backward is itself
    differentiable (``create_graph=True``), with out-of-place ops in that case.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, loss_sum: Tensor, flat_index: Tensor, positive: Tensor,
                weights: Tensor) -> Tensor:
        ctx.save_for_backward(logits, flat_index, positive, weights)
        return loss_sum.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        logits, flat_index, positive, weights = ctx.saved_tensors
        probs = torch.sigmoid(logits.float()).contiguous()
        if torch.is_grad_enabled():  # double backward: keep every op differentiable and out of place
            grad = probs.view(-1).index_add(0, flat_index, -positive.to(probs.dtype)).view(probs.shape)
            grad = grad * weights * grad_output
        else:
            flat = probs.view(-1)
            flat[flat_index] = flat[flat_index] - positive.float()
            grad = probs.mul_(weights).mul_(grad_output)
        return grad.to(logits.dtype), None, None, None, None

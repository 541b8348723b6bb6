"""Eager GHM-C from integer class labels, in row chunks, without materialising the full one-hot target.

RetinaNet-style heads pass ``(N,)`` labels for ``(N, C)`` logits. The ``(N, C)`` work runs over chunks of
about :data:`CHUNK_ENTRIES` entries, each with its own chunk-sized one-hot target, so every temporary stays
in cache and the gradient norm and the gradient are those of :mod:`.gradient_norm` applied to the chunk. The
only full-size tensors are the region index of each entry (one byte per entry for up to 255 regions, when
there is more than one chunk), kept for the backward instead of the weights, and the gradient. The peak
extra memory of a forward and backward is therefore about 1.25x the float32 logits plus a few chunks,
whatever ``N``. The chunk boundaries come from the shapes alone, so nothing syncs with an accelerator.

The loss value is ``softplus`` of the logit, negated at the label, which is more accurate than
``binary_cross_entropy_with_logits`` for very confident logits (at ``|x| ~ 12`` the latter is off by about
1.4e-5 relative, because it adds ``log1p(exp(-|x|))`` to ``max(x, 0) - x * t`` in float32).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .density import bin_counts, bin_indices, gather_weights, weight_table
from .gradient_norm import bce_gradient, sigmoid_gradient_norm

#: Gradient norms below this are "easy" examples, above 1 minus it "outliers" (Sec. 3.1 of the paper).
EASY_BELOW = 0.1
OUTLIER_ABOVE = 0.9
#: Entries per chunk of the ``(N, C)`` passes (4 MiB of float32): small enough to stay in a CPU's cache,
#: large enough that the few kernel launches per chunk do not matter.
CHUNK_ENTRIES = 2**20


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """``(..., C)`` float32 one-hot target of integer ``labels`` in ``[0, C]``; ``C`` (background) is all 0.

    A fill and one value scattered per row: on a CPU ten times faster than comparing every entry with its
    class, which is what makes a chunk-sized one-hot cheap next to the chunk's sigmoid (the traced route
    compares instead, which Inductor fuses away).
    """
    target = torch.zeros(*labels.shape, num_classes, device=labels.device)
    is_class = (labels < num_classes).float().unsqueeze(-1)
    return target.scatter_(-1, labels.clamp(max=num_classes - 1).unsqueeze(-1), is_class)


def loss_shares(weighted_loss: Tensor, gradient_norm: Tensor) -> Tensor:
    """``(3,)`` sums of the detached ``beta * loss``: over all entries, over the easy ones (``g`` below
    :data:`EASY_BELOW`) and over the outliers (``g`` above :data:`OUTLIER_ABOVE`), in its dtype."""
    weighted_loss = weighted_loss.detach()
    return torch.stack([weighted_loss.sum(),
                        torch.where(gradient_norm < EASY_BELOW, weighted_loss, 0.0).sum(),
                        torch.where(gradient_norm > OUTLIER_ABOVE, weighted_loss, 0.0).sum()])


def row_chunks(num_rows: int, num_classes: int) -> List[slice]:
    """Row slices of about :data:`CHUNK_ENTRIES` entries each, covering ``range(num_rows)``."""
    rows = max(1, CHUNK_ENTRIES // max(num_classes, 1))
    return [slice(start, min(start + rows, num_rows)) for start in range(0, num_rows, rows)]


def label_bin_counts(logits: Tensor, labels: Tensor, valid: Optional[Tensor],
                     edges: Tensor) -> Tuple[Tensor, Tensor]:
    """The first pass: ``(counts, regions)``, the ``(bins,)`` float64 counts and the region of every entry.

    Args:
        logits: ``(N, C)`` floating logits (any dtype and layout; computed in float32).
        labels: ``(N,)`` int64 labels in [0, C], ``C`` = background.
        valid: ``(N, 1)`` bool, the anchors whose entries take part, or ``None`` (all).
        edges: ``(bins + 1,)`` float32 edges.

    Returns:
        ``regions`` is ``(N, C)``, ``bins`` for entries not counted: uint8 for up to 255 regions when the input
        spans several chunks; within one chunk (4 MiB at most) ``bin_indices``' int32 itself, which needs no
        copy and no conversion before each gather.
    """
    bins, x = edges.numel() - 1, logits.detach()
    chunks = row_chunks(*x.shape)
    if len(chunks) <= 1:
        regions = bin_indices(sigmoid_gradient_norm(x, one_hot(labels, x.shape[1])), edges, valid)
        return bin_counts(regions, bins), regions
    regions = torch.empty(x.shape, dtype=torch.uint8 if bins < 256 else torch.int32, device=x.device)
    counts = torch.zeros(bins, dtype=torch.float64, device=x.device)
    for rows in chunks:
        gradient_norm = sigmoid_gradient_norm(x[rows], one_hot(labels[rows], x.shape[1]))
        regions[rows] = index = bin_indices(gradient_norm, edges, None if valid is None else valid[rows])
        counts += bin_counts(index, bins)
    return counts, regions


def label_weighted_bce(logits: Tensor, labels: Tensor, regions: Tensor, beta: Tensor,
                       record_shares: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """The second pass: GHM-C's summed loss ``sum_ij beta_ij * BCE(x_ij, onehot(labels)_ij)``.

    Args:
        logits, labels: as in :func:`label_bin_counts`.
        regions: from :func:`label_bin_counts`.
        beta: ``(bins,)`` float64 harmonizing parameter per region.
        record_shares: also return the sums of ``beta * BCE`` over all entries, over ``g < 0.1`` and over
            ``g > 0.9`` (for statistics).

    Returns:
        ``(loss_sum, shares)``: float32 scalar whose gradient is ``beta * (sigmoid(x) - t)``, and ``None`` or
        the ``(3,)`` float64 shares.
    """
    table, x = weight_table(beta), logits.detach()
    sums = torch.zeros(3 if record_shares else 1, dtype=torch.float64, device=x.device)
    for rows in row_chunks(*x.shape):
        target = one_hot(labels[rows], x.shape[1])
        chunk = x[rows].float()
        gradient_norm = sigmoid_gradient_norm(chunk, target) if record_shares else None
        # softplus(x), and softplus(-x) at the label: x - 2 x t is -x exactly there (2x and x - 2x are exact).
        bce = F.softplus(torch.addcmul(chunk, chunk, target, value=-2.0, out=target))
        weighted = bce.mul_(gather_weights(table, regions[rows].int()))
        if record_shares:
            sums += loss_shares(weighted, gradient_norm)
        else:
            sums += weighted.sum()  # float32 within a chunk, float64 across chunks
    loss = _WeightedLabelBCE.apply(logits, sums[0].float(), labels, regions, table)
    return loss, (sums if record_shares else None)


class _WeightedLabelBCE(torch.autograd.Function):
    """Attaches the gradient ``beta[region] * (sigmoid(x) - onehot(labels))`` to a precomputed loss sum.

    Saves the inputs, the region index (one byte per entry for inputs of several chunks) and the
    ``(bins + 1,)`` weight table; writes into no input. Its backward is itself differentiable
    (``create_graph=True``), out of place in that case.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, loss_sum: Tensor, labels: Tensor, regions: Tensor,
                table: Tensor) -> Tensor:
        ctx.save_for_backward(logits, labels, regions, table)
        return loss_sum.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        logits, labels, regions, table = ctx.saved_tensors
        num_classes = logits.shape[-1]
        if torch.is_grad_enabled():  # double backward: keep every op differentiable
            grad = bce_gradient(torch.sigmoid(logits.float()), one_hot(labels, num_classes))
            grad = grad * gather_weights(table, regions.int())
            return (grad * grad_output).to(logits.dtype), None, None, None, None
        grad = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
        x = logits.detach()
        for rows in row_chunks(*x.shape):
            probs = torch.sigmoid(x[rows].float(), out=grad[rows])  # each chunk computed in its place
            bce_gradient(probs, one_hot(labels[rows], num_classes), out=probs)
            probs.mul_(gather_weights(table, regions[rows].int())).mul_(grad_output)
        return grad.to(logits.dtype), None, None, None, None

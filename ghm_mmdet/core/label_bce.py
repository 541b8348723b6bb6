"""Eager GHM-C from integer class labels, in row chunks, without materialising the one-hot target.

RetinaNet-style heads pass ``(N,)`` labels for ``(N, C)`` logits, about 1% of them positive. With binary
targets ``t``, the gradient norm is ``g = p`` except at the one positive class of each anchor, where it is
``1 - p``; the BCE is ``softplus(x)`` except there, where it is ``softplus(-x)``. Both are handled by
``O(rows)`` gathers at ``(i, label_i)``.

The ``(N, C)`` work runs over chunks of about :data:`CHUNK_ENTRIES` entries, so every float temporary is
chunk-sized and stays in cache; the only full-size tensors are the region index of each entry (one byte
per entry for up to 255 regions, when there is more than one chunk), kept for the backward instead of the
weights, and the gradient. The peak extra memory of a forward and backward is therefore about 1.25x the
float32 logits plus a few chunks, whatever ``N``. The chunk boundaries come from the shapes alone, so
nothing syncs with an accelerator.

The loss value is ``softplus`` of the logit, which is more accurate than
``binary_cross_entropy_with_logits`` for very confident logits (at ``|x| ~ 12`` the latter is off by about
1.4e-5 relative, because it adds ``log1p(exp(-|x|))`` to ``max(x, 0) - x * t`` in float32).
"""
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .density import bin_counts, bin_indices, gather_weights, weight_table
from .harmonize import Density

#: Gradient norms below this are "easy" examples, above 1 minus it "outliers" (Sec. 3.1 of the paper).
EASY_BELOW = 0.1
OUTLIER_ABOVE = 0.9
#: Entries per chunk of the ``(N, C)`` passes (4 MiB of float32): small enough to stay in a CPU's cache,
#: large enough that the few kernel launches per chunk do not matter.
CHUNK_ENTRIES = 2**20


def label_entries(labels: Tensor, num_classes: int) -> Tuple[Tensor, Tensor]:
    """``(flat_index, is_positive)``: the position of ``(i, label_i)`` in the flattened ``(N, C)``
    tensor, and whether the label is a class. Background rows point at column ``C - 1`` with
    ``is_positive`` False, so both have the static shape ``(N,)``."""
    rows = torch.arange(labels.numel(), device=labels.device)
    return rows * num_classes + labels.clamp(max=num_classes - 1), labels < num_classes


def set_at_labels(values: Tensor, flat_index: Tensor, positive: Tensor,
                  at_label: Callable[[Tensor], Tensor]) -> Tensor:
    """In place on the contiguous ``values``: the entry ``(i, label_i)`` of each positive row becomes
    ``at_label(entry)``, where the one-hot target is 1 instead of 0. Returns ``values``."""
    flat = values.view(-1)
    entries = flat[flat_index]
    flat[flat_index] = torch.where(positive, at_label(entries), entries)
    return values


def label_gradient_norm(logits: Tensor, flat_index: Tensor, positive: Tensor,
                        valid_rows: Optional[Tensor]) -> Tensor:
    """``(N, C)`` contiguous float32 ``|sigmoid(x) - t|``, +inf on rows that are not valid (never counted).

    ``logits`` may have any layout: the result is written into a fresh contiguous buffer.
    """
    gradient_norm = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    torch.sigmoid(logits.detach().float(), out=gradient_norm)
    set_at_labels(gradient_norm, flat_index, positive, lambda p: 1.0 - p)
    if valid_rows is not None:
        gradient_norm.masked_fill_(~valid_rows.unsqueeze(-1), float('inf'))
    return gradient_norm


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


def _label_bce(logits: Tensor, flat_index: Tensor, positive: Tensor) -> Tensor:
    """``(n, C)`` float32 ``BCE(x, onehot)``: ``softplus(x)``, and ``softplus(-x)`` at the label."""
    x = logits.float()
    at_label = x.reshape(-1)[flat_index]
    return set_at_labels(F.softplus(x).contiguous(), flat_index, positive, lambda _: F.softplus(-at_label))


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
            ``g > 0.9`` (for statistics).

    Returns:
        ``(loss_sum, density, shares)``: float32 scalar whose gradient is ``beta * (sigmoid(x) - t)``,
        the density, and ``None`` or the ``(3,)`` float64 shares.
    """
    num_rows, num_classes = logits.shape
    bins = edges.numel() - 1
    x = logits.detach()
    chunks = row_chunks(num_rows, num_classes)
    # The region of every entry, ``bins`` for entries not counted: one byte each for up to 255 regions when
    # the input spans several chunks; within one chunk (4 MiB at most) bin_indices' int32 itself, which
    # needs no copy and no conversion before each gather.
    several = len(chunks) > 1
    regions = torch.empty(x.shape, dtype=torch.uint8 if several and bins < 256 else torch.int32,
                          device=x.device) if several or not chunks else None
    counts = torch.zeros(bins, dtype=torch.float64, device=x.device)
    for rows in chunks:
        flat_index, positive = label_entries(labels[rows], num_classes)
        valid = None if valid_rows is None else valid_rows[rows]
        index = bin_indices(label_gradient_norm(x[rows], flat_index, positive, valid), edges)
        counts += bin_counts(index, bins)
        if several:
            regions[rows] = index
        else:
            regions = index
    density = harmonize(counts)
    table = weight_table(density.beta)

    sums = torch.zeros(3 if record_shares else 1, dtype=torch.float64, device=x.device)
    for rows in chunks:
        flat_index, positive = label_entries(labels[rows], num_classes)
        weighted = _label_bce(x[rows], flat_index, positive).mul_(gather_weights(table, regions[rows].int()))
        if record_shares:
            chunk_sums = loss_shares(weighted, label_gradient_norm(x[rows], flat_index, positive, None))
        else:
            chunk_sums = weighted.sum().view(1)
        sums += chunk_sums  # float32 within a chunk, float64 across chunks
    loss = _WeightedLabelBCE.apply(logits, sums[0].float(), labels, regions, table)
    return loss, density, (sums if record_shares else None)


class _WeightedLabelBCE(torch.autograd.Function):
    """Attaches the gradient ``beta[region] * (sigmoid(x) - onehot(labels))`` to a precomputed loss sum.

    Saves the inputs, the region index (one byte per entry for inputs of several chunks) and the
    ``(bins + 1,)`` weight table; writes into no input. Its backward is itself differentiable
    (``create_graph=True``), out of place in that case. (``.int()`` on the regions copies only one-byte
    regions, a chunk at a time.)
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
        if torch.is_grad_enabled():  # double backward: keep every op differentiable and out of place
            one_hot = labels.unsqueeze(-1) == torch.arange(num_classes, device=labels.device)
            grad = (torch.sigmoid(logits.float()) - one_hot.float()) * gather_weights(table, regions.int())
            return (grad * grad_output).to(logits.dtype), None, None, None, None
        grad = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
        x = logits.detach()
        for rows in row_chunks(logits.shape[0], num_classes):
            flat_index, positive = label_entries(labels[rows], num_classes)
            probs = set_at_labels(torch.sigmoid(x[rows].float()).contiguous(), flat_index, positive,
                                  lambda p: p - 1.0)
            torch.mul(probs, gather_weights(table, regions[rows].int()), out=grad[rows])
            grad[rows].mul_(grad_output)  # while the chunk is in cache
        return grad.to(logits.dtype), None, None, None, None

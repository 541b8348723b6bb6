"""The one-hot-free label path equals the plain one-hot computation."""
import pytest
import torch
import torch.nn.functional as F

from ghm_mmdet.core import (GHMC_LAST_EDGE, bin_indices, label_bin_indices, sigmoid_gradient_norm,
                            unit_region_edges, weighted_label_bce)


def one_hot(labels, num_classes):
    return (labels[:, None] == torch.arange(num_classes)).float()


def test_label_bin_indices_equal_the_one_hot_path():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 7, generator=gen) * 4
    logits[0, 2] = 200.0  # sigmoid rounds to 1: g = 0 or 1 exactly
    labels = torch.randint(0, 8, (300,), generator=gen)
    labels[0] = 2
    valid_rows = torch.rand(300, generator=gen) > 0.2
    edges = unit_region_edges(30, GHMC_LAST_EDGE)
    expected = bin_indices(sigmoid_gradient_norm(logits, one_hot(labels, 7)), edges,
                           valid_rows[:, None].expand(300, 7))
    assert torch.equal(label_bin_indices(logits, labels, valid_rows, edges), expected)


@pytest.mark.parametrize('scale', [1.0, 30.0])
def test_weighted_label_bce_value_and_gradient(scale):
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(200, 5, generator=gen) * scale).requires_grad_()
    labels = torch.randint(0, 6, (200,), generator=gen)
    weights = torch.rand(200, 5, generator=gen)
    reference = logits.detach().clone().requires_grad_()
    loss = weighted_label_bce(logits, labels, weights)
    expected = F.binary_cross_entropy_with_logits(reference, one_hot(labels, 5), weight=weights,
                                                  reduction='sum')
    loss.backward()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(logits.grad, reference.grad, rtol=1e-5, atol=1e-7)


def test_weighted_label_bce_half_input_gives_half_gradient():
    logits = torch.randn(10, 3).half().requires_grad_()
    loss = weighted_label_bce(logits, torch.tensor([0, 1, 2, 3] * 2 + [0, 0]), torch.ones(10, 3))
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.float16

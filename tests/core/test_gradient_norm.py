"""The gradient norms are the norms of the real autograd gradients (Eq. 3 and 12, and the softmax one)."""
import pytest
import torch
import torch.nn.functional as F

from ghm_mmdet.core.gradient_norm import (
    asl1_gradient_norm,
    asl1_loss,
    bce_gradient,
    sigmoid_gradient_norm,
    softmax_gradient_norm,
)


def test_sigmoid_gradient_norm_is_the_bce_gradient_norm():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(1000) > 0.5).double()
    F.binary_cross_entropy_with_logits(x, t, reduction='sum').backward()
    assert torch.allclose(sigmoid_gradient_norm(x, t).double(), x.grad.abs(), atol=1e-6)


def test_sigmoid_gradient_norm_is_float32_and_detached_for_half_input():
    g = sigmoid_gradient_norm(torch.zeros(3, dtype=torch.float16, requires_grad=True), torch.ones(3))
    assert g.dtype == torch.float32 and not g.requires_grad
    assert g.tolist() == [0.5, 0.5, 0.5]


def test_asl1_gradient_norm_is_the_asl1_gradient_norm():
    d = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    asl1_loss(d, 0.02).sum().backward()
    assert torch.allclose(asl1_gradient_norm(d, 0.02).double(), d.grad.abs(), atol=1e-6)


def test_asl1_hand_values():
    mu = 0.02
    # d = 0 -> 0; d = sqrt(3) mu -> sqrt(4 mu^2) - mu = mu; gradient norm there = sqrt(3)/2.
    d = torch.tensor([0.0, 3 ** 0.5 * mu])
    assert asl1_loss(d, mu).tolist() == pytest.approx([0.0, mu], abs=1e-9)
    assert asl1_gradient_norm(d, mu).tolist() == pytest.approx([0.0, 3 ** 0.5 / 2])
    # Far from 0 the norm rounds to exactly 1 in float32, and stays below GHM-R's last edge.
    assert asl1_gradient_norm(torch.tensor([1e4, -1e4]), mu).tolist() == [1.0, 1.0]


def test_softmax_gradient_norm_is_half_the_l1_norm_of_the_cross_entropy_gradient():
    x = torch.randn(200, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (200,))
    F.cross_entropy(x, y, reduction='sum').backward()
    assert torch.allclose(softmax_gradient_norm(x, y).double(), x.grad.abs().sum(-1) / 2, atol=1e-6)


def test_bce_gradient_is_the_autograd_gradient_and_keeps_the_graph():
    x = torch.randn(100, requires_grad=True)
    t = (torch.rand(100) > 0.5).float()
    (grad,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, t, reduction='sum'), x)
    ours = bce_gradient(torch.sigmoid(x), t)
    assert ours.requires_grad and torch.allclose(ours, grad, atol=1e-6)

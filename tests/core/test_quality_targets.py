"""GHM-C with QualityFocalLoss's (labels, scores) target, probabilities (``activated``), and per-row weights of
any leading shape: the framework-free core, against sums derived by hand from the paper's definitions."""
import math

import pytest
import torch

from ghm_mmdet.core import GHMArgumentError, ghm_c_loss

pytestmark = pytest.mark.compat

LOGITS = [[0.5, -1.0, 2.0], [0.0, 1.5, -0.5], [-2.0, 0.25, 1.0]]
LABELS = [1, 3, 0]  # 3 = background
SCORES = [0.8, 0.3, 0.6]  # the background row's score is not used


def softplus(x):
    return math.log1p(math.exp(x))


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def soft_targets():
    """The soft target by hand: the score at the label, 0 elsewhere and on the background row."""
    return [[SCORES[i] if j == LABELS[i] else 0.0 for j in range(3)] for i in range(3)]


def test_with_one_bin_it_is_the_summed_bce_of_the_soft_target_value_and_gradient():
    # bins=1, momentum=0: every valid entry has beta = N / (N * 1) = 1 (Eq. 6), so GHM-C 'sum' is the BCE sum,
    # sum_ij softplus(x_ij) - t_ij * x_ij, and its gradient sigmoid(x) - t.
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    target = (torch.tensor(LABELS), torch.tensor(SCORES, dtype=torch.float64))
    loss, _ = ghm_c_loss(logits, target, bins=1, reduction='sum')
    t = soft_targets()
    expected = sum(softplus(LOGITS[i][j]) - t[i][j] * LOGITS[i][j] for i in range(3) for j in range(3))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    gradient = [[sigmoid(LOGITS[i][j]) - t[i][j] for j in range(3)] for i in range(3)]
    torch.testing.assert_close(logits.grad, torch.tensor(gradient, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_probabilities_with_activated_give_the_bce_of_p_and_its_gradient():
    probs = torch.tensor([[sigmoid(x) for x in row] for row in LOGITS], dtype=torch.float64, requires_grad=True)
    target = (torch.tensor(LABELS), torch.tensor(SCORES, dtype=torch.float64))
    loss, _ = ghm_c_loss(probs, target, bins=1, reduction='sum', activated=True)
    t, p = soft_targets(), probs.detach().tolist()
    expected = -sum(t[i][j] * math.log(p[i][j]) + (1 - t[i][j]) * math.log(1 - p[i][j])
                    for i in range(3) for j in range(3))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    gradient = [[(p[i][j] - t[i][j]) / (p[i][j] * (1 - p[i][j])) for j in range(3)] for i in range(3)]
    torch.testing.assert_close(probs.grad, torch.tensor(gradient, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_the_gradient_norm_of_a_soft_target_bins_the_entries():
    # Eq. 3 with p* = t: g = |sigmoid(x) - t|. With two bins (edge 0.5) the counts decide beta = N / (GD * n).
    logits = torch.tensor(LOGITS)
    target = (torch.tensor(LABELS), torch.tensor(SCORES))
    t = soft_targets()
    g = [abs(sigmoid(LOGITS[i][j]) - t[i][j]) for i in range(3) for j in range(3)]
    low = sum(value < 0.5 for value in g)
    beta = {True: 9 / (low * 2), False: 9 / ((9 - low) * 2)}
    expected = sum(beta[g[3 * i + j] < 0.5] * (softplus(LOGITS[i][j]) - t[i][j] * LOGITS[i][j])
                   for i in range(3) for j in range(3))
    loss, _ = ghm_c_loss(logits, target, bins=2, reduction='sum')
    assert 0 < low < 9 and loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('row_shape', ['rows', 'rows_1'])
def test_a_weight_per_row_of_any_leading_shape_is_a_weight_per_entry(row_shape):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, generator=generator) * 3  # (batch, anchors, classes), as YOLOv3 passes them
    target = (torch.rand(2, 5, 4, generator=generator) > 0.7).float()
    row_weight = (torch.rand(2, 5, generator=generator) > 0.3).float()
    weight = row_weight if row_shape == 'rows' else row_weight.unsqueeze(-1)
    acc, acc_flat, acc_full = None, None, None
    for _ in range(2):  # the moving average too
        loss, acc = ghm_c_loss(logits, target, weight, acc, bins=10, momentum=0.75)
        full, acc_full = ghm_c_loss(logits, target, row_weight.unsqueeze(-1).expand(2, 5, 4), acc_full, bins=10,
                                    momentum=0.75)
        flat, acc_flat = ghm_c_loss(logits.reshape(10, 4), target.reshape(10, 4), row_weight.reshape(10), acc_flat,
                                    bins=10, momentum=0.75)
        torch.testing.assert_close(loss, full, rtol=0, atol=0)
        torch.testing.assert_close(loss, flat, rtol=1e-6, atol=0)
        torch.testing.assert_close(acc, acc_flat, rtol=0, atol=0)


def test_labels_with_a_weight_per_entry_equal_the_one_hot_target():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=generator)
    labels = torch.tensor([0, 3, 2, 3, 1, 3])
    weight = (torch.rand(6, 3, generator=generator) > 0.4).float()
    one_hot = torch.nn.functional.one_hot(labels, 4)[:, :3].float()
    loss, _ = ghm_c_loss(logits, labels, weight, bins=5)
    dense, _ = ghm_c_loss(logits, one_hot, weight, bins=5)
    torch.testing.assert_close(loss, dense, rtol=0, atol=0)


@pytest.mark.parametrize('weight_shape, message', [
    ((4, 2), r'weight must have the shape of pred \(4, 3\), or one weight per row of shape \(4,\) or \(4, 1\), '
             r'got \(4, 2\)'),
    ((3,), r'got \(3,\)'),
])
def test_a_weight_of_another_shape_is_refused_naming_both_shapes(weight_shape, message):
    with pytest.raises(GHMArgumentError, match=message):
        ghm_c_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(weight_shape))


@pytest.mark.parametrize('target, message', [
    ((torch.tensor([0, 1]), torch.tensor([0.5, 0.5]), torch.tensor([1, 1])),
     "target given as a tuple must be QualityFocalLoss's \\(labels, scores\\), got 3 elements"),
    ((torch.tensor([0, 1]), torch.tensor([0.5, 0.5, 0.5])), r'scores must have shape \(2,\), got \(3,\)'),
    ((torch.tensor([[0], [1]]), torch.tensor([0.5, 0.5])), r'labels must be integer labels of shape \(2,\)'),
    ((torch.tensor([0, 1]), torch.tensor([0.5, 1.5])), r'target: binary or soft targets must be in \[0, 1\], '
                                                       'got 1.5'),
    ((torch.tensor([0, 4]), torch.tensor([0.5, 0.5])), r'integer labels must be in \[0, 3\]'),
])
def test_a_malformed_quality_target_is_refused_by_name(target, message):
    with pytest.raises(GHMArgumentError, match=message):
        ghm_c_loss(torch.zeros(2, 3), target)

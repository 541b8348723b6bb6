"""GHMC takes what mmdet's quality-aware and YOLO heads pass: with one bin and no moving average it equals mmdet's
QualityFocalLoss(beta=0) (logits and probabilities) and YOLOv3's sigmoid CrossEntropyLoss, value and gradient."""
import pytest
import torch
from mmdet.models.losses import CrossEntropyLoss, QualityFocalLoss

from ghm_mmdet.models import GHMC

pytestmark = pytest.mark.compat


def quality_inputs(seed=0, rows=40, classes=5):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, classes + 1, (rows,), generator=generator)  # classes = background
    scores = torch.rand(rows, generator=generator, dtype=torch.float64)
    weight = (torch.rand(rows, generator=generator) > 0.2).double()  # FocalLoss-style label weights (N,)
    return logits, labels, scores, weight


@pytest.mark.parametrize('activated', [False, True])
@pytest.mark.parametrize('with_weight', [False, True])
def test_one_bin_equals_quality_focal_loss_with_beta_zero(activated, with_weight):
    # QFL(beta=0) per entry is BCE(x, t) with t the score at the label (its modulating factor |t - p|^0 = 1),
    # summed over classes; GHM-C with bins=1, momentum=0 gives every valid entry beta = 1.
    logits, labels, scores, weight = quality_inputs()
    pred = logits.sigmoid() if activated else logits
    weight = weight if with_weight else None
    ours = pred.detach().clone().requires_grad_()
    theirs = pred.detach().clone().requires_grad_()
    loss = GHMC(bins=1, momentum=0.0, reduction='sum', activated=activated)(ours, (labels, scores), weight)
    reference = QualityFocalLoss(use_sigmoid=True, beta=0.0, reduction='sum', activated=activated)(
        theirs, (labels, scores), weight)
    torch.testing.assert_close(loss, reference.to(loss.dtype), rtol=1e-5, atol=1e-6)
    loss.backward()
    reference.backward()
    # Ours runs in float32: with probabilities, 1 - p near p = 1 keeps fewer digits in the BCE's gradient.
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4 if activated else 1e-5, atol=1e-6)


def test_yolov3s_broadcast_weight_equals_its_cross_entropy():
    # YOLOv3Head: loss_cls(pred_label (N, A, C), target_label (N, A, C) one-hot, weight=pos_mask (N, A, 1)),
    # with CrossEntropyLoss(use_sigmoid=True, reduction='sum').
    generator = torch.Generator().manual_seed(3)
    pred = (torch.randn(2, 30, 4, generator=generator) * 2).requires_grad_()
    target = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 30), generator=generator), 4).float()
    weight = (torch.rand(2, 30, 1, generator=generator) > 0.6).float()
    reference_pred = pred.detach().clone().requires_grad_()
    loss = GHMC(bins=1, momentum=0.0, reduction='sum')(pred, target, weight)
    reference = CrossEntropyLoss(use_sigmoid=True, reduction='sum')(reference_pred, target, weight)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(pred.grad, reference_pred.grad, rtol=1e-5, atol=1e-7)


def test_reduction_override_is_honoured_with_a_quality_target():
    logits, labels, scores, _ = quality_inputs(seed=2)
    loss = GHMC(bins=1, reduction='mean')
    summed = loss(logits, (labels, scores), reduction_override='sum')
    per_entry = loss(logits, (labels, scores), reduction_override='none')
    assert per_entry.shape == logits.shape
    torch.testing.assert_close(per_entry.sum(), summed)
    torch.testing.assert_close(loss(logits, (labels, scores)), summed / logits.numel())


def test_activated_needs_the_sigmoid_form():
    with pytest.raises(ValueError, match=r'activated=True \(probabilities\) needs use_sigmoid=True'):
        GHMC(use_sigmoid=False, activated=True)
    with pytest.raises(TypeError, match='activated must be a bool, got 1'):
        GHMC(activated=1)

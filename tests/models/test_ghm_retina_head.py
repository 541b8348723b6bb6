"""GHMRetinaHead: one loss call over every FPN level and image, as the paper's batch statistics."""
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from ghm_mmdet.models import GHMRetinaHead
from ghm_mmdet.models.losses import GHMC, GHMR

HEAD = dict(
    num_classes=4, in_channels=8, stacked_convs=1, feat_channels=8,
    anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                          ratios=[1.0], strides=[8, 16]),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
    loss_cls=dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
    loss_bbox=dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0),
    train_cfg=ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                       min_pos_iou=0, ignore_iof_thr=-1),
                         sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
                         debug=False))


def problem():
    torch.manual_seed(0)
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    head = GHMRetinaHead(**HEAD)
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    cls_scores, bbox_preds = head(feats)
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64))] * 2
    gts = []
    for _ in range(2):
        gt = InstanceData()
        gt.bboxes = torch.tensor([[4.0, 4.0, 30.0, 30.0], [30.0, 20.0, 60.0, 44.0]])
        gt.labels = torch.tensor([1, 3])
        gts.append(gt)
    return head, cls_scores, bbox_preds, gts, metas


def test_one_call_over_all_levels_equals_the_loss_on_the_concatenated_batch():
    head, cls_scores, bbox_preds, gts, metas = problem()
    losses = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    assert losses['loss_cls'].dim() == 0 and losses['loss_bbox'].dim() == 0

    anchors, valid = head.get_anchors([s.shape[-2:] for s in cls_scores], metas, device='cpu')
    labels, label_weights, bbox_targets, bbox_weights, avg_factor = head.get_targets(
        anchors, valid, gts, metas)
    flat_scores = torch.cat([s.permute(0, 2, 3, 1).reshape(2, -1, 4) for s in cls_scores], 1)
    flat_deltas = torch.cat([b.permute(0, 2, 3, 1).reshape(2, -1, 4) for b in bbox_preds], 1)
    expected_cls = GHMC(bins=30, momentum=0.75)(flat_scores.reshape(-1, 4),
                                                torch.cat(labels, 1).reshape(-1),
                                                torch.cat(label_weights, 1).reshape(-1))
    expected_bbox = GHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)(
        flat_deltas.reshape(-1, 4), torch.cat(bbox_targets, 1).reshape(-1, 4),
        torch.cat(bbox_weights, 1).reshape(-1, 4))
    assert torch.allclose(losses['loss_cls'], expected_cls, rtol=1e-5)
    assert torch.allclose(losses['loss_bbox'], expected_bbox, rtol=1e-5)
    # The moving average was updated once for the batch (not once per level): equal to one call's.
    fresh = GHMC(bins=30, momentum=0.75)
    fresh(flat_scores.reshape(-1, 4), torch.cat(labels, 1).reshape(-1),
          torch.cat(label_weights, 1).reshape(-1))
    assert torch.allclose(head.loss_cls.acc_sum, fresh.acc_sum)


def test_per_level_statistics_differ_from_whole_batch():
    head, cls_scores, bbox_preds, gts, metas = problem()
    whole = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)['loss_cls']
    per_level_head, *_ = problem()
    from mmdet.models.dense_heads import RetinaHead
    per_level = RetinaHead.loss_by_feat(per_level_head, cls_scores, bbox_preds, gts, metas)
    assert len(per_level['loss_cls']) == 2
    assert not torch.allclose(sum(per_level['loss_cls']), whole)


def test_decoded_boxes_with_box_types():
    """reg_decoded_bbox=True with HorizontalBoxes anchors (use_box_type): the box loss sees decoded boxes,
    equal to decoding the concatenated batch by hand."""
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = dict(HEAD, reg_decoded_bbox=True,
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                               target_stds=[1.0] * 4, use_box_type=True),
               anchor_generator=dict(HEAD['anchor_generator'], use_box_type=True),
               loss_bbox=dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=1.0))
    torch.manual_seed(0)
    head = GHMRetinaHead(**cfg)
    _, cls_scores, bbox_preds, gts, metas = problem()
    anchors, valid = head.get_anchors([s.shape[-2:] for s in cls_scores], metas, device='cpu')
    assert isinstance(anchors[0][0], HorizontalBoxes)
    losses = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    assert torch.isfinite(losses['loss_bbox'])
    _, _, bbox_targets, bbox_weights, _ = head.get_targets(anchors, valid, gts, metas)
    flat_anchors = torch.cat([torch.cat([a.tensor for a in per_image]) for per_image in anchors])
    flat_deltas = torch.cat([b.permute(0, 2, 3, 1).reshape(2, -1, 4) for b in bbox_preds], 1)
    decoded = head.bbox_coder.decode(flat_anchors, flat_deltas.reshape(-1, 4)).tensor
    expected = GHMR(mu=0.02, bins=10, momentum=0.7)(
        decoded, torch.cat(bbox_targets, 1).reshape(-1, 4), torch.cat(bbox_weights, 1).reshape(-1, 4))
    assert torch.allclose(losses['loss_bbox'], expected, rtol=1e-5)


def test_heads_with_their_own_targets_or_losses_are_refused_at_construction():
    import pytest
    from mmdet.models.dense_heads import ATSSHead, FreeAnchorRetinaHead, SABLRetinaHead

    from ghm_mmdet.core import GHMArgumentError
    from ghm_mmdet.models import WholeBatchLossMixin
    for head_class, method in ((ATSSHead, 'loss_by_feat'), (FreeAnchorRetinaHead, 'loss_by_feat')):
        whole_batch = type(f'WholeBatch{head_class.__name__}', (WholeBatchLossMixin, head_class), {})
        with pytest.raises(GHMArgumentError, match=rf'{head_class.__name__}, which overrides '
                                                   rf'AnchorHead\.{method}'):
            whole_batch(**HEAD)
    sabl = type('WholeBatchSABL', (WholeBatchLossMixin, SABLRetinaHead), {})  # not an AnchorHead
    with pytest.raises(GHMArgumentError, match='WholeBatchSABL: WholeBatchLossMixin needs an AnchorHead'):
        sabl(**HEAD)

    class OwnTargets(GHMRetinaHead):
        def get_targets(self, *args, **kwargs):
            raise AssertionError('never reached')

    with pytest.raises(GHMArgumentError, match=r'OwnTargets, which overrides AnchorHead\.get_targets'):
        OwnTargets(**HEAD)

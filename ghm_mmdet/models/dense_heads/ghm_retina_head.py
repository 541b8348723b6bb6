"""A RetinaHead whose GHM statistics cover the whole batch, all FPN levels at once.

mmdet's ``AnchorHead.loss_by_feat`` calls the losses once per FPN level, so a GHM loss sees five small
gradient distributions per iteration and updates its moving average five times. The paper computes the
gradient density over all the examples of the batch; this head makes one call with every level and image.
"""
from typing import List

import torch
from mmdet.models.dense_heads import AnchorHead, RetinaHead
from mmdet.structures.bbox import cat_boxes, get_box_tensor
from mmdet.utils import InstanceList, OptInstanceList
from torch import Tensor

from ghm_mmdet.core.checks import GHMArgumentTypeError

#: What the mixin relies on: ``AnchorHead``'s own targets and per-level loss (it replaces the latter).
_ANCHOR_HEAD_METHODS = ('loss_by_feat', 'loss_by_feat_single', 'get_targets', '_get_targets_single')


class WholeBatchLossMixin:
    """For an ``AnchorHead`` subclass that keeps ``AnchorHead``'s targets and loss: one loss call over all
    levels and images of the batch.

    Heads that compute their targets or losses their own way (ATSS, FSAF, SABL, FreeAnchor, ...) are
    refused at construction, naming the method they override: the whole-batch call would bypass it.

    The returned ``loss_cls`` and ``loss_bbox`` are single tensors, not per-level lists. Their scale
    differs from the per-level sum (one mean over all anchors instead of one per level), so this is not
    mmdet's published GHM recipe; use it with a re-tuned ``loss_weight``.
    """

    def __init__(self, *args, **kwargs):
        check_whole_batch_head(type(self))
        super().__init__(*args, **kwargs)

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        anchor_list, valid_flag_list = self.get_anchors(
            featmap_sizes, batch_img_metas, device=cls_scores[0].device)
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
         avg_factor) = self.get_targets(
             anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
             batch_gt_instances_ignore=batch_gt_instances_ignore)
        num_imgs = len(batch_img_metas)

        def per_anchor(maps: List[Tensor], channels: int) -> Tensor:
            # (num_imgs, A * channels, H, W) per level -> (num_imgs * all anchors, channels), in the
            # anchor order of get_targets (level-major within each image).
            flat = [m.permute(0, 2, 3, 1).reshape(num_imgs, -1, channels) for m in maps]
            return torch.cat(flat, dim=1).reshape(-1, channels)

        cls_score = per_anchor(cls_scores, self.cls_out_channels)
        labels = torch.cat(labels_list, dim=1).reshape(-1)
        label_weights = torch.cat(label_weights_list, dim=1).reshape(-1)
        loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor)

        bbox_pred = per_anchor(bbox_preds, self.bbox_coder.encode_size)
        bbox_targets = torch.cat(bbox_targets_list, dim=1)
        target_dim = bbox_targets.size(-1)
        bbox_targets = bbox_targets.reshape(-1, target_dim)
        bbox_weights = torch.cat(bbox_weights_list, dim=1).reshape(-1, target_dim)
        if self.reg_decoded_bbox:
            # Anchors are tensors or box types (HorizontalBoxes): cat_boxes handles both.
            anchors = get_box_tensor(cat_boxes([cat_boxes(anchors) for anchors in anchor_list]))
            bbox_pred = get_box_tensor(self.bbox_coder.decode(anchors.reshape(-1, anchors.size(-1)),
                                                              bbox_pred))
        loss_bbox = self.loss_bbox(bbox_pred, bbox_targets, bbox_weights, avg_factor=avg_factor)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)


def check_whole_batch_head(head_class: type) -> None:
    """Raise :class:`GHMArgumentTypeError` unless ``head_class`` (with the mixin first in its MRO) is an
    ``AnchorHead`` whose targets and losses are ``AnchorHead``'s own."""
    if not issubclass(head_class, AnchorHead):
        raise GHMArgumentTypeError(f'{head_class.__name__}: WholeBatchLossMixin needs an AnchorHead '
                                   'subclass')
    mro = head_class.__mro__
    replaced = mro[mro.index(WholeBatchLossMixin) + 1:]  # what the mixin's loss_by_feat stands in for
    for name in _ANCHOR_HEAD_METHODS:
        owner = next(c for c in mro if name in vars(c))
        if owner is WholeBatchLossMixin:
            owner = next(c for c in replaced if name in vars(c))
        if owner is not AnchorHead:
            raise GHMArgumentTypeError(
                f'{head_class.__name__}: whole-batch GHM statistics are not supported for {owner.__name__}, '
                f'which overrides AnchorHead.{name}; the whole-batch loss would bypass it. Use '
                f'{owner.__name__} with the GHM losses per level instead.')


class GHMRetinaHead(WholeBatchLossMixin, RetinaHead):
    """:class:`~mmdet.models.dense_heads.RetinaHead` with whole-batch GHM statistics (same arguments)."""

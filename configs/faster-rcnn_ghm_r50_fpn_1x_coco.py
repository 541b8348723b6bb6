# Faster R-CNN R-50-FPN, 1x schedule on COCO, with GHM in both stages, the two-stage experiment of
# arXiv:1811.05181: GHM-C and GHM-R in place of the RPN's binary cross-entropy and L1, and GHM-R in place
# of the RoI head's L1 (its softmax cross-entropy is kept; faster-rcnn_ghm-softmax_r50_fpn_1x_coco.py
# replaces it too). The GHM settings are the published RetinaNet-GHM ones (GHM-C bins 30, momentum 0.75;
# GHM-R mu 0.02, bins 10, momentum 0.7, loss_weight 10), not tuned for two stages. Not trained on COCO
# here: tests/configs/test_head_matrix.py checks only that it trains (finite losses, gradients reach both
# heads), gives mmdet's built-in GHM losses' numbers and predicts finite boxes, at batch 1 and 2.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    rpn_head=dict(
        # _delete_: the replaced losses' keys must not leak into the GHM losses.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(
            _delete_=True, type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)),
    roi_head=dict(
        bbox_head=dict(
            loss_bbox=dict(
                _delete_=True, type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0))))

# ATSS R-50-FPN, 1x schedule on COCO, with GHM-C (arXiv:1811.05181; bins 30, momentum 0.75, the published
# RetinaNet-GHM setting) in place of Focal Loss. Only the classification loss changes: ATSS's GIoU box loss
# and centerness loss are kept (GHM-R is defined on box deltas, not on decoded boxes). Not trained on COCO
# here: tests/configs/test_head_matrix.py checks only that it trains (finite losses, gradients reach the
# head) and gives mmdet's built-in GHM-C's numbers, at batch 1 and 2.
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: FocalLoss's gamma/alpha must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

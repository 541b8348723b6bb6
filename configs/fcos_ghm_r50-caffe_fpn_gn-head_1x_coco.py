# FCOS R-50-caffe-FPN (GN head), 1x schedule on COCO, with GHM-C (arXiv:1811.05181; bins 30, momentum
# 0.75, the published RetinaNet-GHM setting) in place of Focal Loss. Only the classification loss changes:
# FCOS's IoU box loss and centerness loss are kept (GHM-R is defined on box deltas, not on decoded boxes).
# FCOSHead passes no label weights, which ghm_mmdet's GHMC accepts (all points valid) and mmdet's built-in
# GHMC does not. Not trained on COCO here: tests/configs/test_head_matrix.py checks only that it trains
# (finite losses, gradients reach the head), at batch 1 and 2.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: FocalLoss's gamma/alpha must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

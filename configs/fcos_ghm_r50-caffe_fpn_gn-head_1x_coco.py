# FCOS R-50-caffe-FPN (GN head), 1x COCO, with GHM-C (RetinaNet-GHM's published settings) in place of Focal
# Loss; the IoU and centerness losses stay (GHM-R needs box deltas). FCOSHead passes no label weights, so
# every point counts as valid (mmdet's built-in GHMC cannot run here). Not trained on COCO here.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: FocalLoss's gamma/alpha must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

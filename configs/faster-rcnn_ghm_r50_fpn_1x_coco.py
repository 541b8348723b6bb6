# Faster R-CNN R-50-FPN, 1x COCO, the paper's two-stage experiment: GHM-C + GHM-R on the RPN, GHM-R on the
# RoI head (its softmax CE stays; see the -softmax config). RetinaNet-GHM's settings, not tuned for two
# stages; not trained on COCO here.
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

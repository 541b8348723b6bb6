# mmrotate's rotated RetinaNet (rbox, le90) R-50-FPN, 1x on DOTA, with GHM-C and GHM-R in place of Focal Loss and
# L1 on the (dx, dy, dw, dh, dtheta) deltas, with the settings of RetinaNet-GHM's published recipe (mmdet's
# configs/ghm, GHM-R weighted 10 where L1 was 1). mmrotate's schedule already clips the gradient norm at 35, as
# that recipe does. Needs mmrotate >= 1.0.0rc1. Not trained on DOTA here.
_base_ = 'mmrotate::rotated_retinanet/rotated-retinanet-rbox-le90_r50_fpn_1x_dota.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: FocalLoss's gamma/alpha must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='mmdet.GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(
            _delete_=True, type='mmdet.GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)))

# ATSS R-50-FPN, 1x COCO, with GHM-C (RetinaNet-GHM's published settings) in place of Focal Loss. The GIoU
# and centerness losses stay: GHM-R is defined on box deltas, not decoded boxes. Not trained on COCO here.
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: FocalLoss's gamma/alpha must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

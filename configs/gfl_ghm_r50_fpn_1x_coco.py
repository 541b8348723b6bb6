# GFL R-50-FPN, 1x COCO, with quality-target GHM-C (RetinaNet-GHM's published settings) in place of
# QualityFocalLoss: the soft target is the IoU at the label. GFLHead passes avg_factor (its number of
# positives), which GHM-C ignores as mmdet's does: it normalises by its own N through beta (Eq. 8), as in the
# RetinaNet recipe. The GIoU and distribution focal losses stay. Not trained on COCO here.
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: QualityFocalLoss's beta must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

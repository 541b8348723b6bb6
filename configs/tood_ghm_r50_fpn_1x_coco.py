# TOOD R-50-FPN, 1x COCO, with quality-target GHM-C (RetinaNet-GHM's published bins and momentum) in place of
# QualityFocalLoss after the warm-up epochs (initial_loss_cls, Focal Loss, stays for them). TOODHead outputs
# probabilities (activated=True), calls the loss with avg_factor=1.0 and divides by the sum of its alignment
# metrics itself, so GHM-C sums (reduction='sum'). The GIoU loss stays. Not trained on COCO here.
_base_ = 'mmdet::tood/tood_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: QualityFocalLoss's beta must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, activated=True,
            loss_weight=1.0, reduction='sum')))

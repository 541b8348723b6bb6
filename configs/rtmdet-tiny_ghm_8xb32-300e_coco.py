# RTMDet-tiny, 300 epochs on COCO, with quality-target GHM-C (RetinaNet-GHM's published bins and momentum) in
# place of QualityFocalLoss: the soft target is the assignment metric at the label. RTMDetHead calls the loss
# with avg_factor=1.0 and divides by the sum of its assignment metrics itself, so GHM-C sums (reduction='sum')
# and the head's normalisation is the only one. The GIoU loss stays. Not trained on COCO here.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: QualityFocalLoss's beta must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0,
            reduction='sum')))

# mmyolo's RTMDet-tiny, 300 epochs on COCO, with quality-target GHM-C (RetinaNet-GHM's published bins and momentum)
# in place of QualityFocalLoss: the soft target is the assignment metric at the label. Unlike mmdet's RTMDetHead,
# mmyolo's passes the sum of the assignment metrics as avg_factor and does not divide afterwards; GHM-C ignores
# avg_factor, so it keeps reduction='mean' (Eq. 8's 1/N) as its only normalisation. The GIoU loss stays. Needs
# mmyolo >= 0.6.0. Not trained on COCO here.
_base_ = 'mmyolo::rtmdet/rtmdet_tiny_syncbn_fast_8xb32-300e_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: QualityFocalLoss's beta must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='mmdet.GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

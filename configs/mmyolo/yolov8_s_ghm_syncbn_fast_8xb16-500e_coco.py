# mmyolo's YOLOv8-s, 500 epochs on COCO, with GHM-C (RetinaNet-GHM's published bins and momentum) in place of the
# sigmoid cross-entropy of the class branch, on the task-aligned soft scores. YOLOv8Head sums what the loss returns
# and divides by the sum of the assigned scores S. GHM-C keeps reduction='mean', so the class loss is Eq. 8's
# divided by S; the base's 'none' would make it N / S times Eq. 8's, N the number of entries. The CIoU and DFL
# losses stay. Needs mmyolo >= 0.6.0. Not trained on COCO here.
_base_ = 'mmyolo::yolov8/yolov8_s_syncbn_fast_8xb16-500e_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # _delete_: the base's reduction='none' must not leak into GHM-C.
        loss_cls=dict(
            _delete_=True, type='mmdet.GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=0.5)))

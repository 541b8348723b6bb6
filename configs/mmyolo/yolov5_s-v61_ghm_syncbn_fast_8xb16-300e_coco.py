# mmyolo's YOLOv5-s, 300 epochs on COCO, with GHM-C (RetinaNet-GHM's published bins and momentum) in place of the
# sigmoid cross-entropy of the class branch (one-hot targets of the positives) and of the objectness branch (IoU
# targets over every prior). Both keep mmyolo's reduction='mean', GHM-C's 1/N of Eq. 8. The CIoU loss stays.
# Needs mmyolo >= 0.6.0. Not trained on COCO here.
_base_ = 'mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        # The base's weights: loss_cls_weight * (num_classes / 80 * 3 / num_det_layers) and
        # loss_obj_weight * ((img_scale[0] / 640)**2 * 3 / num_det_layers).
        loss_cls=dict(
            _delete_=True, type='mmdet.GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=0.5),
        loss_obj=dict(
            _delete_=True, type='mmdet.GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)))

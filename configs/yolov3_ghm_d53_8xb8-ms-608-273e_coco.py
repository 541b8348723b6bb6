# YOLOv3 DarkNet-53, 273 epochs on COCO, with GHM-C (RetinaNet-GHM's published bins and momentum) in place of
# the sigmoid cross-entropy of its class scores. YOLOV3Head passes one weight per prediction, (N, A, 1), for the
# (N, A, C) scores (broadcast over the classes) and expects summed losses (reduction='sum'), as its own
# CrossEntropyLoss. The confidence and box losses stay. Not trained on COCO here.
_base_ = 'mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py'

custom_imports = dict(imports=['ghm_mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True, type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0,
            reduction='sum')))

# Faster R-CNN R-50-FPN, 1x COCO, with GHM everywhere: faster-rcnn_ghm_r50_fpn_1x_coco.py plus softmax GHM-C
# for the RoI head's C + 1 outputs (g = 1 - softmax(x)[label]), which mmdet lacks. Not trained on COCO here.
_base_ = './faster-rcnn_ghm_r50_fpn_1x_coco.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True, type='GHMC', use_sigmoid=False, bins=30, momentum=0.75,
                loss_weight=1.0))))

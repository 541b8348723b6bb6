# Faster R-CNN R-50-FPN, 1x schedule on COCO, with GHM everywhere: as faster-rcnn_ghm_r50_fpn_1x_coco.py
# (GHM-C and GHM-R on the RPN, GHM-R on the RoI head), and the RoI head's softmax cross-entropy replaced by
# softmax GHM-C (use_sigmoid=False: gradient norm g = 1 - softmax(x)[label] over the num_classes + 1
# outputs, background included). mmdet has no softmax GHM-C and this config has not been trained on COCO
# here: tests/configs/test_head_matrix.py checks only that it trains (finite losses, gradients reach both
# heads), that with one bin and no momentum the RoI loss equals mmdet's CrossEntropyLoss, and that it
# predicts finite boxes, at batch 1 and 2.
_base_ = './faster-rcnn_ghm_r50_fpn_1x_coco.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True, type='GHMC', use_sigmoid=False, bins=30, momentum=0.75,
                loss_weight=1.0))))

# RetinaNet R-101-FPN with GHM-C and GHM-R, 1x COCO: the recipe of mmdet 3.3's
# configs/ghm/retinanet_r101_fpn_ghm-1x_coco.py (published box AP 39.1). Only the backbone differs from the
# project's R-50 GHM config.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

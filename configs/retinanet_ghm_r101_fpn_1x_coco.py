# GHM RetinaNet with a ResNet-101 backbone: mmdet 3.3's configs/ghm/retinanet_r101_fpn_ghm-1x_coco.py
# (published box AP 39.1). The GHM losses and clipping come from the R-50 config, so they are set in one
# place.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))

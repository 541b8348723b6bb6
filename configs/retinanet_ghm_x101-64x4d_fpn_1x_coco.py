# RetinaNet X-101-64x4d-FPN with GHM-C and GHM-R, 1x COCO: the recipe of mmdet 3.3's
# configs/ghm/retinanet_x101-64x4d_fpn_ghm-1x_coco.py (published box AP 41.4). Only the backbone differs
# from the project's R-50 GHM config.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=64,
        base_width=4,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d')))

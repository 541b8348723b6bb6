# RetinaNet R-50-FPN, 1x COCO, with whole-batch GHM statistics (GHMRetinaHead: one call per iteration over
# all FPN levels and images, the paper's density). Loss weights times the number of levels keep the scale
# the published lr and clipping were tuned for (see retinanet_ghm-wholebatch_demo.py): a starting point,
# not a tuned setting; not trained on COCO here.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

num_fpn_levels = len(_base_.model.bbox_head.anchor_generator.strides)

model = dict(
    bbox_head=dict(
        type='GHMRetinaHead',
        loss_cls=dict(loss_weight=1.0 * num_fpn_levels),
        loss_bbox=dict(loss_weight=10.0 * num_fpn_levels)))

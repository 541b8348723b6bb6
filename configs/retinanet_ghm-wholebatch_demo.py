# The demo with whole-batch GHM statistics, as in the paper: GHMRetinaHead makes one GHM-C and one GHM-R call
# per iteration over every FPN level and image, instead of one per level.
# Loss weights times the number of FPN levels: one GHM call's value is about the mean loss per occupied bin
# whatever its number of anchors, and RetinaHead sums one per level, so this keeps the scale the lr and the
# clipping were set for. Its measured effect: docs/benchmarks.md (setting wholebatch_ghmc_ghmr).
_base_ = './retinanet_ghm_demo.py'

num_fpn_levels = len(_base_.model.bbox_head.anchor_generator.strides)

model = dict(
    bbox_head=dict(
        type='GHMRetinaHead',
        loss_cls=dict(loss_weight=1.0 * num_fpn_levels),
        loss_bbox=dict(loss_weight=10.0 * num_fpn_levels)))

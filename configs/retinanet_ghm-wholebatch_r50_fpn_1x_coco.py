# RetinaNet R-50-FPN, 1x on COCO, with whole-batch GHM statistics (GHMRetinaHead: one GHM-C and one GHM-R
# call per iteration over all five FPN levels and every image, the paper's gradient density) instead of
# RetinaHead's call per level. Not trained on COCO here: no box AP has been measured for this config.
#
# Loss weights are the published recipe's times the number of FPN levels L (5 here: 5.0 and 50.0), the rule
# of configs/retinanet_ghm-wholebatch_demo.py: one GHM call's value is about the mean loss per occupied
# gradient bin, whatever the number of anchors, so RetinaHead's sum over L levels is about L times the
# single whole-batch value. This matches the scale the published lr and clipping at 35 were tuned for; it
# is a starting point, not a tuned setting.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

num_fpn_levels = len(_base_.model.bbox_head.anchor_generator.strides)

model = dict(
    bbox_head=dict(
        type='GHMRetinaHead',
        loss_cls=dict(loss_weight=1.0 * num_fpn_levels),
        loss_bbox=dict(loss_weight=10.0 * num_fpn_levels)))

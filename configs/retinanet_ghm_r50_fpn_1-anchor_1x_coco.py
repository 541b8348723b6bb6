# RetinaNet R-50-FPN, 1x schedule on COCO, with one anchor per location (octave_base_scale=4,
# scales_per_octave=1, ratios=[1.0], as in FSAF and ATSS) instead of nine, and the published GHM settings of
# retinanet_ghm_r50_fpn_1x_coco.py. mmdet publishes no such model and this config has not been trained on
# COCO here: tests/configs/test_head_matrix.py checks only that it trains (finite losses, gradients reach
# the head) and gives mmdet's built-in GHM losses' numbers, at batch 1 and 2.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

model = dict(
    bbox_head=dict(anchor_generator=dict(octave_base_scale=4, scales_per_octave=1, ratios=[1.0])))

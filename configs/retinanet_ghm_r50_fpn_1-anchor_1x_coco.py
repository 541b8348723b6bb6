# RetinaNet-GHM (retinanet_ghm_r50_fpn_1x_coco.py) with one anchor per location instead of nine, as FSAF and
# ATSS use: GHM in a single-anchor head, part of the head matrix. No published model; not trained on COCO.
_base_ = './retinanet_ghm_r50_fpn_1x_coco.py'

model = dict(
    bbox_head=dict(anchor_generator=dict(octave_base_scale=4, scales_per_octave=1, ratios=[1.0])))

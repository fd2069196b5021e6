# GHM-C (the GHM paper's bins 30, momentum 0.75) with the L1 box loss of the other demo
# rows, so that it differs from them in the classification loss only.
_base_ = './retinanet_r18_synthetic_ghm_paper.py'
model = dict(bbox_head=dict(loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)))

# Sigmoid focal loss (gamma 2, alpha 0.25, the focal loss paper's RetinaNet setting),
# the plugin's SigmoidFocalLoss.
_base_ = './_base_/retinanet_r18_synthetic.py'
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type='SigmoidFocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)))

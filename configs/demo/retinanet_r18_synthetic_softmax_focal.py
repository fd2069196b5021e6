# Softmax focal loss (gamma 2): the head predicts num_classes + 1 scores (a background
# column), mmdet's RetinaHead does that when the loss says use_sigmoid=False.
_base_ = './_base_/retinanet_r18_synthetic.py'
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type='SoftmaxFocalLoss', use_sigmoid=False, gamma=2.0, loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)))

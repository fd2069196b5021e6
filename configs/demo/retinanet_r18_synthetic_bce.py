# Plain BCE (sigmoid cross entropy, no focal term, no alpha): the baseline the focal loss
# paper improves on. mmdet's own CrossEntropyLoss with use_sigmoid=True.
_base_ = './_base_/retinanet_r18_synthetic.py'
model = dict(
    bbox_head=dict(
        loss_cls=dict(_delete_=True, type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)))

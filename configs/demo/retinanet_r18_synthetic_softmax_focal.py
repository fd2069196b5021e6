# Softmax focal loss (gamma 2): the head predicts num_classes + 1 scores (a background
# column), mmdet's RetinaHead does that when the loss says use_sigmoid=False. The classifier
# bias starts at background probability 0.99 (focal_plugins.mmdet's SoftmaxPriorInit), the
# softmax counterpart of the sigmoid heads' bias_prob=0.01.
_base_ = './_base_/retinanet_r18_synthetic.py'
model = dict(
    bbox_head=dict(
        init_cfg=dict(
            type='Normal', layer='Conv2d', std=0.01,
            override=dict(type='SoftmaxPriorInit', name='retina_cls', std=0.01,
                          num_classes={{_base_.num_classes}}, background_prob=0.99)),
        loss_cls=dict(_delete_=True, type='SoftmaxFocalLoss', use_sigmoid=False, gamma=2.0,
                      loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)))

# RetinaNet R50-FPN 1x COCO with a softmax focal classifier (focal_plugins): the head predicts
# num_classes + 1 scores per anchor (last = background); alpha 0.25 on foreground anchors,
# 0.75 on background ones (alpha_mode='paper'). mmdet's own post-processing (softmax, drop
# the background column) is used at test time.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='SoftmaxFocalLoss',
            use_sigmoid=False,
            gamma=2.0,
            alpha=0.25,
            alpha_mode='paper',
            loss_weight=1.0),
        # softmax prior for the classifier: background 0.99 at init (the shipped bias_prob
        # is a sigmoid convention; see focal_plugins.mmdet.init.SoftmaxPriorInit)
        init_cfg=dict(
            type='Normal',
            layer='Conv2d',
            std=0.01,
            override=dict(
                type='SoftmaxPriorInit',
                name='retina_cls',
                std=0.01,
                num_classes=80,
                background_prob=0.99))))

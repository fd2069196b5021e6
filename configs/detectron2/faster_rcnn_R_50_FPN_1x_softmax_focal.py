# LazyConfig: Faster R-CNN R50-FPN 1x (see faster_rcnn_R_50_FPN_1x_ghm.py) with softmax focal
# loss in the RoI classifier, GHM-C on the RPN objectness and GHM-R on the box deltas.
from detectron2.config import LazyCall as L

from focal_plugins.detectron2 import (
    FocalPluginsFastRCNNOutputLayers, FocalPluginsRPN, build_loss, get_model_zoo_config)

_zoo = get_model_zoo_config
model = _zoo("common/models/mask_rcnn_fpn.py").model
dataloader = _zoo("common/data/coco.py").dataloader
optimizer = _zoo("common/optim.py").SGD
lr_multiplier = _zoo("common/coco_schedule.py").lr_multiplier_1x
train = _zoo("common/train.py").train

dataloader.train.mapper.use_instance_mask = False
for _k in ("mask_in_features", "mask_pooler", "mask_head"):
    del model.roi_heads[_k]
model.backbone.bottom_up.freeze_at = 2
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"

model.proposal_generator._target_ = FocalPluginsRPN
model.proposal_generator.cls_loss = L(build_loss)(name="GHMC", bins=30, momentum=0.75)
model.proposal_generator.box_loss = L(build_loss)(name="GHMR", mu=0.02, bins=10, momentum=0.7)
model.roi_heads.box_predictor._target_ = FocalPluginsFastRCNNOutputLayers
model.roi_heads.box_predictor.cls_loss = L(build_loss)(name="SoftmaxFocalLoss", gamma=2.0)
model.roi_heads.box_predictor.box_loss = L(build_loss)(name="GHMR", mu=0.02, bins=10, momentum=0.7)

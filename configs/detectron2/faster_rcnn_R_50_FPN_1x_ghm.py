# LazyConfig: Faster R-CNN R50-FPN 1x (detectron2's model-zoo Mask R-CNN FPN model without
# its mask branch, COCO data and 1x schedule) with GHM-C / GHM-R in the RPN and RoI head.
# GHM-R mu 0.02 is the GHM paper's, for 12-epoch COCO with target stds 1 (mmdet's model zoo
# reports RetinaNet R-50 GHM at AP 37.0; not measured here). mu is in the box coder's units
# and must fit the residuals of your data and schedule: on the demo 0.02 fails and 0.1 works.
# Check with python -m focal_plugins.tools.ghmr_mu (docs/demo.md, "GHM-R: choosing mu").
# The RoI head's Box2BoxTransform weights (10, 10, 5, 5) scale the deltas x10/x5 against 1,
# so its residuals, and the mu that fits them, are that much larger.
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
model.roi_heads.box_predictor.cls_loss = L(build_loss)(name="GHMC", bins=30, momentum=0.75)
model.roi_heads.box_predictor.box_loss = L(build_loss)(name="GHMR", mu=0.02, bins=10, momentum=0.7)

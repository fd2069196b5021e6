# LazyConfig: detectron2's model-zoo RetinaNet R50-FPN 1x with GHM-C and GHM-R.
# Override e.g. "model.cls_loss.bins=20" (LazyConfig.apply_overrides / lazyconfig_train_net).
from detectron2.config import LazyCall as L

from focal_plugins.detectron2 import FocalPluginsRetinaNet, build_loss, get_model_zoo_config

_base = get_model_zoo_config("COCO-Detection/retinanet_R_50_FPN_1x.py")
dataloader, optimizer, lr_multiplier, train = (
    _base.dataloader, _base.optimizer, _base.lr_multiplier, _base.train)
model = _base.model
model._target_ = FocalPluginsRetinaNet
model.cls_loss = L(build_loss)(name="GHMC", bins=30, momentum=0.75, loss_weight=1.0)
# GHM paper weight 10 per coordinate = 2.5 under detectron2's per-anchor normaliser
model.box_loss = L(build_loss)(name="GHMR", mu=0.02, bins=10, momentum=0.7, loss_weight=2.5)

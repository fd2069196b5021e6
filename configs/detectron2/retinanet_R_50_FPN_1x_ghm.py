# LazyConfig: detectron2's model-zoo RetinaNet R50-FPN 1x with GHM-C and GHM-R.
# Override e.g. "model.cls_loss.bins=20" (LazyConfig.apply_overrides / lazyconfig_train_net).
# GHM-R mu 0.02 is the GHM paper's, for 12-epoch COCO with target stds 1 (mmdet's model zoo
# reports RetinaNet R-50 GHM at AP 37.0; not measured here). mu is in the box coder's units
# and must fit the residuals of your data and schedule: on the demo 0.02 fails and 0.1 works.
# Check with python -m focal_plugins.tools.ghmr_mu (docs/demo.md, "GHM-R: choosing mu").
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

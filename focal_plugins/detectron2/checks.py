"""A YACS config must not set plugin loss keys that no built component reads.

``MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME: SoftmaxFocalLoss`` with ``META_ARCHITECTURE:
RetinaNet`` would otherwise train detectron2's own loss without a word. Which component reads
which keys:

* ``RETINANET.*``: the meta-architecture ``FocalPluginsRetinaNet`` (or a subclass);
* ``RPN.*``: the proposal generator ``FocalPluginsRPN``, in an R-CNN / proposal network;
* ``ROI_BOX_HEAD.*``: the RoI heads ``FocalPluginsROIHeads``, in an R-CNN.

The check runs when the config is frozen (``FocalPluginsCfgNode.freeze``) and when a plugin
component is built. Names not (yet) in detectron2's registries, and meta-architectures that
derive from none of detectron2's (which may read the keys themselves), are not judged.
A component built on its own (``FocalPluginsRPN(cfg, input_shape)``, as detectron2's tests
build ``RPN``) reads its own keys whatever the rest of the config says: it passes its head
as ``reader``.

The plugin components say which keys they read by a class attribute,
``_focal_plugins_reads`` (``"RETINANET"``, ``"RPN"``, ``"ROI_BOX_HEAD"``), so this module
imports none of them (no import circle).
"""
__all__ = ["HEADS", "unread_loss_keys", "check_loss_keys_are_read"]

#: the heads whose losses the plugin can change, and their nodes under MODEL.FOCAL_PLUGINS
HEADS = ("RETINANET", "RPN", "ROI_BOX_HEAD")


def _reads(cls, head) -> bool:
    return cls is not None and getattr(cls, "_focal_plugins_reads", None) == head


def _lookup(registry, name):
    try:
        return registry.get(name)
    except KeyError:
        return None


def unread_loss_keys(cfg, reader=None):
    """One message per plugin loss NAME (and for RETINANET.PER_LEVEL) that is set but read
    by no component the config builds; empty when all are read or when it cannot tell.
    ``reader``: the head (a key of HEADS) of the component asking, whose keys are read."""
    from detectron2.modeling import (META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                                     ROI_HEADS_REGISTRY)
    from detectron2.modeling.meta_arch import (GeneralizedRCNN, ProposalNetwork, RetinaNet,
                                               SemanticSegmentor)

    root = cfg.MODEL.get("FOCAL_PLUGINS", None)
    if root is None:
        return []
    arch_name = cfg.MODEL.META_ARCHITECTURE
    arch = _lookup(META_ARCH_REGISTRY, arch_name)
    if arch is None or not issubclass(
            arch, (GeneralizedRCNN, ProposalNetwork, RetinaNet, SemanticSegmentor)):
        return []
    rcnn = issubclass(arch, GeneralizedRCNN)
    arch_is = f"MODEL.META_ARCHITECTURE = {arch_name!r}"
    out = []
    for head in HEADS:
        if head not in root or head == reader:
            continue
        for slot in ("CLS_LOSS", "BOX_LOSS"):
            node = root[head].get(slot, None)
            name = node.get("NAME", "") if node is not None else ""
            if not name:
                continue
            if head == "RETINANET":
                if _reads(arch, "RETINANET"):
                    continue
                why = (f"{arch_is} trains detectron2's own RetinaNet losses"
                       if issubclass(arch, RetinaNet) else f"{arch_is} has no RetinaNet head")
                fix = "MODEL.META_ARCHITECTURE to 'FocalPluginsRetinaNet'"
            elif head == "RPN":
                pg_name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
                pg = _lookup(PROPOSAL_GENERATOR_REGISTRY, pg_name)
                if not (rcnn or issubclass(arch, ProposalNetwork)):
                    why = f"{arch_is} builds no proposal generator"
                elif _reads(pg, "RPN"):
                    continue
                else:
                    why = f"MODEL.PROPOSAL_GENERATOR.NAME = {pg_name!r} is not the plugin's RPN"
                fix = "MODEL.PROPOSAL_GENERATOR.NAME to 'FocalPluginsRPN'"
            else:
                rh_name = cfg.MODEL.ROI_HEADS.NAME
                rh = _lookup(ROI_HEADS_REGISTRY, rh_name)
                if not rcnn:
                    why = f"{arch_is} builds no RoI heads"
                elif _reads(rh, "ROI_BOX_HEAD"):
                    continue
                else:
                    why = f"MODEL.ROI_HEADS.NAME = {rh_name!r} is not the plugin's RoI heads"
                fix = "MODEL.ROI_HEADS.NAME to 'FocalPluginsROIHeads'"
            key = f"MODEL.FOCAL_PLUGINS.{head}.{slot}.NAME"
            out.append(f"{key} = {name!r} is read by no component of this model: {why}. "
                       f"Set {fix}, or {key} to '' (detectron2's own loss).")
    retina = root.get("RETINANET", None)
    if retina is not None and retina.get("PER_LEVEL", False) is not False and \
            not _reads(arch, "RETINANET") and reader != "RETINANET":
        out.append(f"MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL = {retina.PER_LEVEL!r} is read by "
                   f"no component of this model: {arch_is} is not the plugin's RetinaNet. Set "
                   "MODEL.META_ARCHITECTURE to 'FocalPluginsRetinaNet', or PER_LEVEL to False.")
    return out


def check_loss_keys_are_read(cfg, reader=None) -> None:
    """Raise ValueError listing every message of :func:`unread_loss_keys`."""
    msgs = unread_loss_keys(cfg, reader)
    if msgs:
        raise ValueError("\n".join(msgs))

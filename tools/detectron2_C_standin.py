"""A pure-Python ``detectron2._C`` for a detectron2 laid out from its Python sources alone.

tools/setup_env.sh copies this file to ``detectron2/_C.py`` of the project's detectron2 0.6,
which has no compiled extension. What it answers:

- ``get_compiler_version()``, ``get_cuda_version()``, ``has_cuda()``: what
  ``detectron2.utils.collect_env`` asks, so ``default_setup()`` and ``collect_env_info()`` run;
  they report that no compiled ops are present.
- ``InstanceAnnotation``, ``COCOevalEvaluateImages``, ``COCOevalAccumulate``: the calls of
  ``detectron2.evaluation.fast_eval_api.COCOeval_opt`` (``COCOEvaluator``'s default
  ``use_fast_impl=True``), computed by pycocotools' own per-image matching and accumulation,
  so the numbers are those of ``use_fast_impl=False``, at pycocotools' speed.

Everything else detectron2 takes from ``_C`` raises :class:`NotCompiledError` (an
``AttributeError``, so ``hasattr`` answers False, and a ``NotImplementedError``): deformable
convolution on CUDA (``DeformConv``; on the CPU its forward runs on torchvision) and
modulated deformable convolution anywhere, ``box_iou_rotated`` (``RotatedBoxes.pairwise_iou``,
rotated anchor matching) and ``roi_align_rotated`` (``ROIAlignRotated``). The rotated NMS,
``torch.ops.detectron2.nms_rotated``, is not registered either. ROIAlign, ROIPool, NMS and
the CPU forward of DeformConv come from torchvision and work.
"""
import contextlib
import copy
import io

__all__ = ["get_compiler_version", "get_cuda_version", "has_cuda", "InstanceAnnotation",
           "COCOevalEvaluateImages", "COCOevalAccumulate", "NotCompiledError"]

STANDIN = True  # a real build has no such attribute


class NotCompiledError(AttributeError, NotImplementedError):
    pass


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise NotCompiledError(
        f"detectron2._C.{name}: this detectron2 has no compiled ops (detectron2._C is a "
        "pure-Python stand-in); build detectron2 from source for deformable convolution "
        "and rotated boxes")


def get_compiler_version() -> str:
    return "none (detectron2._C is a pure-Python stand-in: no compiled ops)"


def get_cuda_version() -> str:
    return "not available"


def has_cuda() -> bool:
    return False


class InstanceAnnotation:
    """One ground-truth box or detection, as ``COCOeval_opt`` hands it over."""

    __slots__ = ("id", "score", "area", "is_crowd", "ignore")

    def __init__(self, id, score, area, is_crowd, ignore):
        self.id, self.score, self.area = int(id), float(score), float(area)
        self.is_crowd, self.ignore = bool(is_crowd), bool(ignore)


class _Evaluations(list):
    """pycocotools' ``evalImgs`` list, in its order: category, area range, image."""


def _coco_eval(iou_thrs):
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(iouType="bbox")
    ev.params.iouThrs = iou_thrs
    ev.params.useCats = 1  # the caller has already merged categories where it does not
    return ev


def COCOevalEvaluateImages(area_ranges, max_det, iou_thrs, ious, gts, dts):
    """Per-image matching: ``ious[i][c]``, ``gts[i][c]``, ``dts[i][c]`` for image i and
    category c (a single merged category when the evaluation ignores categories)."""
    ev = _coco_eval(iou_thrs)
    num_cats = len(ious[0]) if len(ious) else 0
    for i, per_image in enumerate(ious):
        for c in range(num_cats):
            ev.ious[i, c] = per_image[c]
            ev._gts[i, c] = [{"id": g.id, "area": g.area, "iscrowd": int(g.is_crowd),
                              "ignore": int(g.ignore)} for g in gts[i][c]]
            ev._dts[i, c] = [{"id": d.id, "score": d.score, "area": d.area}
                             for d in dts[i][c]]
    return _Evaluations(ev.evaluateImg(i, c, area, max_det)
                        for c in range(num_cats) for area in area_ranges
                        for i in range(len(ious)))


def COCOevalAccumulate(params, evaluations):
    """``COCOeval.accumulate`` on the evaluations above; returns what it stores in
    ``self.eval``."""
    if not isinstance(evaluations, _Evaluations):
        raise TypeError("evaluations must come from COCOevalEvaluateImages, got "
                        f"{type(evaluations).__name__}")
    ev = _coco_eval(params.iouThrs)
    ev.params = copy.deepcopy(params)
    ev._paramsEval = copy.deepcopy(params)
    ev.evalImgs = evaluations
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        ev.accumulate()
    return ev.eval

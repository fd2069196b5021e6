"""A small synthetic COCO-format detection dataset, made for imbalance-aware losses.

What it exercises:

* heavy foreground/background imbalance: many small objects (default 9-24 px on 128 x 128
  images) over a cluttered, textured background with distractor shapes that are not objects;
* long-tailed class frequencies: class ``k`` (0-based) is drawn with probability proportional
  to ``tail_ratio ** k``, so the last classes are rare (the counts are written to the json's
  ``info`` and printed by the CLI);
* optionally noisy training labels (``noise``): that exact fraction of the training
  annotations is corrupted by a wrong class, a badly jittered box, or a spurious box on
  background (the object it replaced stays drawn and unannotated): a third each with
  ``noise_type="mixed"`` (the default), or all of one kind with ``noise_type="class"``,
  ``"jitter"`` or ``"spurious"``. The validation split is always clean. Corrupted annotations carry ``"noise": "class" | "jitter" | "spurious"``
  (an extra field that COCO tools ignore).

Deterministic by seed: the same arguments give byte-identical images and json. Every image
has its own random stream derived from (seed, split, index).

Layout written under ``out``::

    train/000000.png ...        val/000000.png ...
    annotations/instances_train.json  annotations/instances_val.json

Framework-free: numpy, Pillow and json only. CLI::

    python -m focal_plugins.data.synthetic --out data/synthetic --seed 0
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw

# (name, shape, RGB colour); the order is the frequency order (first = most frequent).
CLASSES = (
    ("circle", "circle", (230, 40, 40)),
    ("square", "square", (40, 200, 60)),
    ("triangle", "triangle", (50, 90, 240)),
    ("cross", "cross", (240, 220, 30)),
    ("ring", "ring", (230, 50, 220)),
    ("diamond", "diamond", (30, 220, 230)),
    ("star", "star", (250, 140, 20)),
    ("bar", "bar", (250, 250, 250)),
)
MAX_CLASSES = len(CLASSES)
NOISE_KINDS = ("class", "jitter", "spurious")
NOISE_TYPES = ("mixed",) + NOISE_KINDS


@dataclass
class SyntheticConfig:
    """Everything that determines the dataset (stored in the json's ``info``)."""

    seed: int = 0
    num_train: int = 400
    num_val: int = 100
    image_size: int = 128
    num_classes: int = 8
    tail_ratio: float = 0.6
    min_objects: int = 4
    max_objects: int = 10
    min_size: int = 9
    max_size: int = 24
    num_distractors: int = 10
    noise: float = 0.0
    noise_type: str = "mixed"
    image_format: str = "png"
    extra: dict = field(default_factory=dict)

    def validate(self):
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {self.num_classes}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must be a fraction in [0, 1], got {self.noise}")
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {self.noise_type!r}")
        if self.noise_type == "class" and self.num_classes < 2:
            raise ValueError("noise_type='class' needs num_classes >= 2 (a wrong class to "
                             f"give), got num_classes={self.num_classes}")
        if not 0.0 < self.tail_ratio <= 1.0:
            raise ValueError(f"tail_ratio must be in (0, 1], got {self.tail_ratio}")
        if not 4 <= self.min_size <= self.max_size < self.image_size // 2:
            raise ValueError("need 4 <= min_size <= max_size < image_size / 2")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError("need 0 <= min_objects <= max_objects")
        if self.image_format not in ("png", "jpg"):
            raise ValueError("image_format is png or jpg")

    def as_info(self) -> dict:
        """The settings as stored in the json's ``info`` and hashed by ``fingerprint``:
        ``noise_type`` is left out at its default, so datasets made before it existed stay
        byte-identical and their cached copies keep their fingerprint."""
        d = asdict(self)
        if d["noise_type"] == "mixed":
            del d["noise_type"]
        return d


def class_names(num_classes: int = MAX_CLASSES) -> tuple[str, ...]:
    return tuple(name for name, _, _ in CLASSES[:num_classes])


def class_probabilities(num_classes: int, tail_ratio: float) -> np.ndarray:
    w = tail_ratio ** np.arange(num_classes, dtype=np.float64)
    return w / w.sum()


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    split_id = {"train": 1, "val": 2}[split]
    return np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))


# ---------------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth coloured noise at a few scales plus fine grain: a textured, cluttered base."""
    img = np.zeros((size, size, 3), np.float32)
    base = rng.uniform(60, 150, size=3).astype(np.float32)
    img += base
    for cells, amp in ((4, 40.0), (12, 25.0), (32, 12.0)):
        low = rng.normal(0.0, amp, size=(cells, cells, 3)).astype(np.float32)
        # PIL float images are single-channel: upsample each channel on its own
        up = [
            np.asarray(Image.fromarray(low[..., c]).resize((size, size), Image.BILINEAR))
            for c in range(3)
        ]
        img += np.stack(up, axis=-1)
    img += rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    # desaturate so the objects' pure colours stand out, but not completely
    grey = img.mean(axis=-1, keepdims=True)
    img = 0.45 * img + 0.55 * grey
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    g = rng.uniform(50, 200)
    c = g + rng.normal(0, 25, size=3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _draw_distractor(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int):
    """Clutter that is not an object: lines, outlined ellipses, blotches, scribbles."""
    kind = rng.integers(0, 4)
    colour = _muted(rng)
    x0, y0 = rng.uniform(0, size, size=2)
    if kind == 0:  # a line
        ang = rng.uniform(0, math.pi)
        length = rng.uniform(10, size / 2)
        draw.line(
            [(x0, y0), (x0 + length * math.cos(ang), y0 + length * math.sin(ang))],
            fill=colour,
            width=int(rng.integers(1, 3)),
        )
    elif kind == 1:  # outlined ellipse
        w, h = rng.uniform(6, 30, size=2)
        draw.ellipse([x0, y0, x0 + w, y0 + h], outline=colour, width=1)
    elif kind == 2:  # irregular blotch
        n = int(rng.integers(4, 8))
        r = rng.uniform(3, 12)
        angs = np.sort(rng.uniform(0, 2 * math.pi, size=n))
        rad = r * rng.uniform(0.5, 1.2, size=n)
        pts = [(x0 + a * math.cos(t), y0 + a * math.sin(t)) for t, a in zip(angs, rad)]
        draw.polygon(pts, fill=colour)
    else:  # scribble
        pts = [(x0, y0)]
        for _ in range(int(rng.integers(3, 6))):
            pts.append((pts[-1][0] + rng.uniform(-10, 10), pts[-1][1] + rng.uniform(-10, 10)))
        draw.line(pts, fill=colour, width=1)


def _star(x0, y0, x1, y1, points=5):
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    pts = []
    for i in range(2 * points):
        t = -math.pi / 2 + i * math.pi / points
        f = 1.0 if i % 2 == 0 else 0.45
        pts.append((cx + f * rx * math.cos(t), cy + f * ry * math.sin(t)))
    return pts


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, box, colour):
    """Draws ``shape`` filling the box [x0, y0, x1, y1] (pixel-inclusive corners)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x0 + w / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        t = max(2.0, w / 3), max(2.0, h / 3)
        draw.rectangle([x0 + (w - t[0]) / 2, y0, x0 + (w + t[0]) / 2, y1], fill=colour)
        draw.rectangle([x0, y0 + (h - t[1]) / 2, x1, y0 + (h + t[1]) / 2], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(round(min(w, h) / 5))))
    elif shape == "diamond":
        draw.polygon([(x0 + w / 2, y0), (x1, y0 + h / 2), (x0 + w / 2, y1), (x0, y0 + h / 2)], fill=colour)
    elif shape == "star":
        draw.polygon(_star(x0, y0, x1, y1), fill=colour)
    elif shape == "bar":
        draw.rectangle(box, fill=colour)
        draw.rectangle([x0 + w / 4, y0 + h / 4, x1 - w / 4, y1 - h / 4], fill=(20, 20, 20))
    else:  # pragma: no cover
        raise ValueError(shape)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place_boxes(rng, cfg: SyntheticConfig, n: int, taken: list) -> list:
    boxes = []
    for _ in range(n):
        for _attempt in range(30):
            side = rng.uniform(cfg.min_size, cfg.max_size)
            aspect = 1.0 if rng.random() < 0.5 else rng.uniform(0.75, 1.33)
            w = min(cfg.max_size, max(cfg.min_size, side * math.sqrt(aspect)))
            h = min(cfg.max_size, max(cfg.min_size, side / math.sqrt(aspect)))
            x0 = rng.uniform(1, cfg.image_size - w - 1)
            y0 = rng.uniform(1, cfg.image_size - h - 1)
            b = (float(np.floor(x0)), float(np.floor(y0)), float(np.floor(x0 + w)), float(np.floor(y0 + h)))
            if all(_iou(b, t) < 0.05 for t in taken + boxes):
                boxes.append(b)
                break
    return boxes


def render_image(cfg: SyntheticConfig, split: str, index: int):
    """One image and its clean annotations: (PIL image, [(class_index, [x0,y0,x1,y1])])."""
    rng = _rng(cfg.seed, split, index)
    img = _background(rng, cfg.image_size)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(cfg.num_distractors // 2, cfg.num_distractors + 1))):
        _draw_distractor(draw, rng, cfg.image_size)
    probs = class_probabilities(cfg.num_classes, cfg.tail_ratio)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    boxes = _place_boxes(rng, cfg, n, [])
    objects = []
    for box in boxes:
        k = int(rng.choice(cfg.num_classes, p=probs))
        name, shape, colour = CLASSES[k]
        jitter = rng.integers(-25, 26, size=3)
        col = tuple(int(v) for v in np.clip(np.array(colour) + jitter, 0, 255))
        _draw_object(draw, shape, box, col)
        # COCO boxes: the drawn shape covers pixels x0..x1 inclusive
        objects.append((k, [box[0], box[1], box[2] + 1.0, box[3] + 1.0]))
    # a few distractors on top too, so objects are sometimes partly cluttered
    for _ in range(int(rng.integers(0, 3))):
        _draw_distractor(draw, rng, cfg.image_size)
    return img, objects


# ------------------------------------------------------------------------------ annotations
def _corrupt(annotations: list, cfg: SyntheticConfig, boxes_by_image: dict) -> list:
    """Corrupts exactly round(noise * N) annotations (a deterministic choice), cycling
    through the three kinds (``noise_type="mixed"``) or all of ``noise_type``."""
    n_noisy = int(round(cfg.noise * len(annotations)))
    if n_noisy == 0:
        return annotations
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 99]))
    chosen = rng.choice(len(annotations), size=n_noisy, replace=False)
    size = cfg.image_size
    for j, idx in enumerate(sorted(chosen.tolist())):
        ann = annotations[idx]
        kind = (NOISE_KINDS[j % len(NOISE_KINDS)] if cfg.noise_type == "mixed"
                else cfg.noise_type)
        x, y, w, h = ann["bbox"]
        if kind == "class" and cfg.num_classes > 1:
            others = [c for c in range(1, cfg.num_classes + 1) if c != ann["category_id"]]
            ann["category_id"] = int(rng.choice(others))
        elif kind == "jitter" or (kind == "class" and cfg.num_classes == 1):
            kind = "jitter"
            # shift by 30-60% of the size and rescale by 0.6-1.6: IoU with the truth ~< 0.5
            dx, dy = rng.choice([-1, 1], size=2) * rng.uniform(0.3, 0.6, size=2) * (w, h)
            sw, sh = rng.uniform(0.6, 1.6, size=2)
            nw, nh = max(2.0, w * sw), max(2.0, h * sh)
            cx, cy = x + w / 2 + dx, y + h / 2 + dy
            x0, y0 = np.clip(cx - nw / 2, 0, size - 2), np.clip(cy - nh / 2, 0, size - 2)
            x1, y1 = np.clip(cx + nw / 2, x0 + 2, size), np.clip(cy + nh / 2, y0 + 2, size)
            x, y, w, h = float(x0), float(y0), float(x1 - x0), float(y1 - y0)
        else:  # spurious: a box where there is no object (the object goes unannotated)
            kind = "spurious"
            taken = boxes_by_image[ann["image_id"]]
            for _ in range(50):
                nw, nh = rng.uniform(cfg.min_size, cfg.max_size, size=2)
                x0, y0 = rng.uniform(0, size - nw), rng.uniform(0, size - nh)
                cand = (x0, y0, x0 + nw, y0 + nh)
                if all(_iou(cand, t) < 0.05 for t in taken):
                    break
            x, y, w, h = float(x0), float(y0), float(nw), float(nh)
            ann["category_id"] = int(rng.integers(1, cfg.num_classes + 1))
        ann["bbox"] = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
        ann["area"] = round(ann["bbox"][2] * ann["bbox"][3], 2)
        ann["noise"] = kind
    return annotations


def generate_split(cfg: SyntheticConfig, out: str, split: str) -> dict:
    """Writes one split's images and returns its COCO dict."""
    n = cfg.num_train if split == "train" else cfg.num_val
    os.makedirs(os.path.join(out, split), exist_ok=True)
    images, annotations, boxes_by_image = [], [], {}
    for i in range(n):
        img, objects = render_image(cfg, split, i)
        fname = f"{i:06d}.{cfg.image_format}"
        path = os.path.join(out, split, fname)
        if cfg.image_format == "png":
            img.save(path, format="PNG", optimize=False, compress_level=6)
        else:
            img.save(path, format="JPEG", quality=95)
        image_id = i + 1
        images.append(
            {"id": image_id, "file_name": fname, "width": cfg.image_size, "height": cfg.image_size}
        )
        boxes_by_image[image_id] = [tuple(b) for _, b in objects]
        for k, (x0, y0, x1, y1) in objects:
            w, h = x1 - x0, y1 - y0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": k + 1,
                    "bbox": [x0, y0, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    if split == "train":
        annotations = _corrupt(annotations, cfg, boxes_by_image)
    counts = {name: 0 for name in class_names(cfg.num_classes)}
    for a in annotations:
        counts[CLASSES[a["category_id"] - 1][0]] += 1
    info = {
        "description": "focal_plugins synthetic long-tailed small-object detection dataset",
        "version": "1",
        "split": split,
        "config": cfg.as_info(),
        "class_counts": counts,
        "num_noisy": sum(1 for a in annotations if "noise" in a),
    }
    categories = [
        {"id": k + 1, "name": name, "supercategory": "shape"}
        for k, name in enumerate(class_names(cfg.num_classes))
    ]
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def generate(cfg: SyntheticConfig, out: str, verbose: bool = False) -> dict:
    """Writes the whole dataset under ``out``; returns {split: coco_dict}."""
    cfg.validate()
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    result = {}
    for split in ("train", "val"):
        coco = generate_split(cfg, out, split)
        path = os.path.join(out, "annotations", f"instances_{split}.json")
        with open(path, "w") as f:
            json.dump(coco, f, indent=1, sort_keys=True)
        result[split] = coco
        if verbose:
            info = coco["info"]
            print(
                f"[synthetic] {split}: {len(coco['images'])} images, {len(coco['annotations'])} "
                f"boxes ({info['num_noisy']} noisy); per class: "
                + ", ".join(f"{k} {v}" for k, v in info["class_counts"].items())
            )
    with open(os.path.join(out, "annotations", "fingerprint.txt"), "w") as f:
        f.write(fingerprint(cfg) + "\n")
    return result


def fingerprint(cfg: SyntheticConfig) -> str:
    """A short hash of the generator config and version (used to cache a generated copy)."""
    blob = json.dumps({"config": cfg.as_info(), "version": 1}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def ensure_dataset(cfg: SyntheticConfig, out: str, verbose: bool = True) -> bool:
    """Generates the dataset at ``out`` unless an identical one is already there.

    Returns True when it (re)generated, False when the cached copy was reused.
    """
    fp_path = os.path.join(out, "annotations", "fingerprint.txt")
    if os.path.exists(fp_path):
        with open(fp_path) as f:
            if f.read().strip() == fingerprint(cfg):
                if verbose:
                    print(f"[synthetic] reusing the dataset in {out} (same seed and settings)")
                return False
    if verbose:
        print(f"[synthetic] generating the dataset in {out} ...")
    generate(cfg, out, verbose=verbose)
    return True


def _parser() -> argparse.ArgumentParser:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(
        prog="python -m focal_plugins.data.synthetic",
        description="Write a synthetic COCO-format detection dataset (long-tailed, small "
        "objects on clutter, optional label noise). Deterministic by seed.",
    )
    p.add_argument("--out", required=True, help="output folder (train/, val/, annotations/)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--num-train", type=int, default=d.num_train)
    p.add_argument("--num-val", type=int, default=d.num_val)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--num-classes", type=int, default=d.num_classes, help=f"1..{MAX_CLASSES}")
    p.add_argument("--tail-ratio", type=float, default=d.tail_ratio,
                   help="class k is drawn with probability proportional to tail_ratio**k")
    p.add_argument("--min-objects", type=int, default=d.min_objects)
    p.add_argument("--max-objects", type=int, default=d.max_objects)
    p.add_argument("--min-size", type=int, default=d.min_size, help="object side, pixels")
    p.add_argument("--max-size", type=int, default=d.max_size)
    p.add_argument("--num-distractors", type=int, default=d.num_distractors)
    p.add_argument("--noise", type=float, default=d.noise,
                   help="fraction of training annotations to corrupt (wrong class, jittered "
                   "box, spurious box); validation stays clean")
    p.add_argument("--noise-type", choices=NOISE_TYPES, default=d.noise_type,
                   help="which corruption: a third each (mixed, default) or one kind only")
    p.add_argument("--format", dest="image_format", choices=("png", "jpg"), default="png")
    return p


def config_from_args(args) -> SyntheticConfig:
    keys = SyntheticConfig.__dataclass_fields__.keys()
    return SyntheticConfig(**{k: v for k, v in vars(args).items() if k in keys})


def main(argv=None):
    args = _parser().parse_args(argv)
    cfg = config_from_args(args)
    generate(cfg, args.out, verbose=True)


if __name__ == "__main__":
    main()

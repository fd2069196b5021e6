"""The synthetic dataset: deterministic by seed, valid COCO, long-tailed, noise as asked."""
import hashlib
import json
import os

import numpy as np
import pytest

from focal_plugins.data.synthetic import (
    SyntheticConfig,
    class_names,
    ensure_dataset,
    fingerprint,
    generate,
    main,
)

SMALL = dict(num_train=40, num_val=10, image_size=96, max_size=20)


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    generate(SyntheticConfig(seed=3, **SMALL), str(tmp_path / "a"))
    generate(SyntheticConfig(seed=3, **SMALL), str(tmp_path / "b"))
    generate(SyntheticConfig(seed=4, **SMALL), str(tmp_path / "c"))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_cli_writes_the_coco_layout(tmp_path):
    main(["--out", str(tmp_path), "--seed", "1", "--num-train", "6", "--num-val", "2",
          "--image-size", "64", "--max-size", "16", "--num-classes", "3"])
    for split, n in (("train", 6), ("val", 2)):
        coco = json.loads((tmp_path / "annotations" / f"instances_{split}.json").read_text())
        assert len(coco["images"]) == n
        assert [c["name"] for c in coco["categories"]] == list(class_names(3))
        for im in coco["images"]:
            assert (tmp_path / split / im["file_name"]).is_file()


def test_annotations_are_valid_and_long_tailed(tmp_path):
    cfg = SyntheticConfig(seed=0, num_train=150, num_val=20, image_size=96, max_size=20)
    coco = generate(cfg, str(tmp_path))
    for split, data in coco.items():
        ids = {im["id"] for im in data["images"]}
        cat_ids = {c["id"] for c in data["categories"]}
        assert cat_ids == set(range(1, cfg.num_classes + 1))
        ann_ids = [a["id"] for a in data["annotations"]]
        assert len(ann_ids) == len(set(ann_ids))
        for a in data["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["image_id"] in ids and a["category_id"] in cat_ids
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= cfg.image_size and y + h <= cfg.image_size
            assert a["area"] == pytest.approx(w * h)
            assert a["iscrowd"] == 0
        per_image = np.bincount([a["image_id"] for a in data["annotations"]])
        assert per_image[1:].mean() >= cfg.min_objects  # many objects per image
    counts = list(coco["train"]["info"]["class_counts"].values())
    assert counts[0] > 10 * counts[-1]  # a long tail: head class >> tail class
    # frequencies fall (allowing sampling wiggle between neighbours)
    assert all(counts[i] >= counts[i + 2] for i in range(len(counts) - 2))
    assert counts == sorted(counts, reverse=True) or sum(
        a < b for a, b in zip(counts, counts[1:])) <= 1


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.3])
def test_noise_fraction_is_honoured(tmp_path, noise):
    clean = generate(SyntheticConfig(seed=5, **SMALL), str(tmp_path / "clean"))
    noisy = generate(SyntheticConfig(seed=5, noise=noise, **SMALL), str(tmp_path / "noisy"))
    anns = noisy["train"]["annotations"]
    flagged = [a for a in anns if "noise" in a]
    assert len(flagged) == round(noise * len(anns))
    assert noisy["train"]["info"]["num_noisy"] == len(flagged)
    if noise:
        assert {a["noise"] for a in flagged} == {"class", "jitter", "spurious"}
    # the flagged ones really differ from the clean labels, the rest are untouched
    by_id = {a["id"]: a for a in clean["train"]["annotations"]}
    for a in anns:
        c = by_id[a["id"]]
        changed = (a["category_id"], a["bbox"]) != (c["category_id"], c["bbox"])
        assert changed == ("noise" in a), (a, c)
    # validation is always clean and equal to the clean run's
    assert noisy["val"]["annotations"] == clean["val"]["annotations"]


def test_cache_reuses_identical_settings(tmp_path):
    cfg = SyntheticConfig(seed=2, num_train=4, num_val=2, image_size=64, max_size=16)
    assert ensure_dataset(cfg, str(tmp_path), verbose=False) is True
    assert ensure_dataset(cfg, str(tmp_path), verbose=False) is False
    other = SyntheticConfig(seed=3, num_train=4, num_val=2, image_size=64, max_size=16)
    assert fingerprint(other) != fingerprint(cfg)
    assert ensure_dataset(other, str(tmp_path), verbose=False) is True


# The annotations' digest of seed 5, SMALL, noise 0.3 made before noise_type existed (at
# e5bc101): the default (mixed) keeps them byte for byte. Images are left out: their PNG
# bytes depend on the Pillow/zlib version, not on this generator.
GOLDEN_MIXED = "bfdba89e8830c21ab1cd7c45fa96349fb1ddf000eccdd90d9a3aa84726ae51c9"


def test_default_noise_type_keeps_the_bytes(tmp_path):
    mixed = generate(SyntheticConfig(seed=5, noise=0.3, **SMALL), str(tmp_path / "a"))
    explicit = generate(SyntheticConfig(seed=5, noise=0.3, noise_type="mixed", **SMALL),
                        str(tmp_path / "b"))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert "noise_type" not in mixed["train"]["info"]["config"]
    assert fingerprint(SyntheticConfig(seed=5, noise=0.3)) == \
        fingerprint(SyntheticConfig(seed=5, noise=0.3, noise_type="mixed"))
    assert _digest(tmp_path / "a" / "annotations") == GOLDEN_MIXED


@pytest.mark.parametrize("kind", ["class", "jitter", "spurious"])
def test_one_noise_type_corrupts_only_that_kind(tmp_path, kind):
    clean = generate(SyntheticConfig(seed=5, **SMALL), str(tmp_path / "clean"))
    noisy = generate(SyntheticConfig(seed=5, noise=0.3, noise_type=kind, **SMALL),
                     str(tmp_path / kind))
    anns, ref = noisy["train"]["annotations"], clean["train"]["annotations"]
    flagged = [a for a in anns if "noise" in a]
    assert len(flagged) == round(0.3 * len(anns)) > 0
    assert {a["noise"] for a in flagged} == {kind}
    assert noisy["train"]["info"]["config"]["noise_type"] == kind
    by_id = {a["id"]: a for a in ref}
    for a in flagged:
        c = by_id[a["id"]]
        if kind == "class":
            assert a["bbox"] == c["bbox"] and a["category_id"] != c["category_id"]
        else:
            assert a["bbox"] != c["bbox"]
    assert noisy["val"]["annotations"] == clean["val"]["annotations"]
    assert fingerprint(SyntheticConfig(seed=5, noise=0.3, noise_type=kind)) != \
        fingerprint(SyntheticConfig(seed=5, noise=0.3))


def test_bad_noise_type_is_refused(tmp_path):
    with pytest.raises(ValueError, match="noise_type must be one of .*'labels'"):
        generate(SyntheticConfig(noise=0.1, noise_type="labels", **SMALL), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="noise_type='class' needs num_classes >= 2"):
        generate(SyntheticConfig(noise=0.1, noise_type="class", num_classes=1, **SMALL),
                 str(tmp_path / "y"))

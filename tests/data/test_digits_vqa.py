import hashlib

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from jointspace.data import build_dataset, read_manifest

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NEEDS = {"identify": "image", "parity": "both", "compare": "both", "verify": "both"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_dataset("digits-vqa", root=tmp_path_factory.mktemp("vqa"))


@pytest.fixture(scope="module")
def rows(built):
    return read_manifest(built, required=("text", "image")).rows


def digit_of(row):
    return int(load_digits().target[int(row["image"].removeprefix("images/")[:4])])


def test_every_answer_is_right_recomputed_from_the_sklearn_targets(rows):
    targets = load_digits().target
    assert len(rows) == 4 * len(targets) == 7188
    assert list(rows[0]) == [
        "id", "image", "text", "label", "split", "meta_question_type", "meta_needs"
    ]  # fmt: skip
    seen = {kind: 0 for kind in NEEDS}
    for row in rows:
        digit = int(targets[int(row["image"][7:11])])
        kind, text = row["meta_question_type"], row["text"]
        assert row["meta_needs"] == NEEDS[kind] and row["id"] == f"{row['image'][7:11]}-{kind}"
        if kind == "identify":
            assert (text, row["label"]) == ("what digit is this?", WORDS[digit])
        elif kind == "parity":
            assert text == "is this digit even?"
            assert row["label"] == ("yes" if digit % 2 == 0 else "no")
        elif kind == "compare":
            k = WORDS.index(text.removeprefix("is it greater than ").removesuffix("?"))
            assert row["label"] == ("yes" if digit > k else "no") and k <= 8
            assert abs(k - digit) <= 3  # near the digit: the question alone says little
        else:
            w = WORDS.index(text.removesuffix("?").split()[-1])
            assert text == f"is this {'an' if w == 8 else 'a'} {WORDS[w]}?"
            assert row["label"] == ("yes" if digit == w else "no")
        seen[kind] += 1
    assert seen == {kind: 1797 for kind in NEEDS}
    classes = {row["label"] for row in rows}
    assert classes == set(WORDS) | {"yes", "no"}


def test_yes_and_no_are_balanced_per_question_type(rows):
    for kind in ("parity", "compare", "verify"):
        answers = [r["label"] for r in rows if r["meta_question_type"] == kind]
        assert set(answers) == {"yes", "no"}
        assert abs(answers.count("yes") / len(answers) - 0.5) < 0.02, kind
    # compare and verify are balanced by construction: exactly half, rounded down.
    for kind in ("compare", "verify"):
        answers = [r["label"] for r in rows if r["meta_question_type"] == kind]
        assert answers.count("yes") == len(answers) // 2


def test_splits_are_by_image_stratified_by_digit(rows):
    split_of: dict[str, set[str]] = {}
    for row in rows:
        split_of.setdefault(row["image"], set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())  # an image's questions share a split
    targets = load_digits().target
    for digit in range(10):
        images = [i for i, t in enumerate(targets) if t == digit]
        splits = [next(iter(split_of[f"images/{i:04d}.png"])) for i in images]
        for name, fraction in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
            assert abs(splits.count(name) / len(images) - fraction) < 0.01, (digit, name)
    trained = {r["label"] for r in rows if r["split"] == "train"}
    assert set(WORDS) <= trained
    for name in ("val", "test"):
        assert {r["label"] for r in rows if r["split"] == name} <= trained


def test_pngs_are_the_real_pixels_and_build_is_deterministic(built, tmp_path):
    pixels = np.asarray(Image.open(built.parent / "images" / "0007.png"))
    assert np.array_equal(pixels, np.rint(load_digits().images[7] * 255 / 16).astype(np.uint8))
    again = build_dataset("digits-vqa", root=tmp_path)
    assert again.read_bytes() == built.read_bytes()
    digest = hashlib.sha256((again.parent / "images" / "1796.png").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((built.parent / "images" / "1796.png").read_bytes()).hexdigest()
    # Cached unless asked to rebuild; a folder holding foreign files needs --force.
    again.write_text("cached")
    assert build_dataset("digits-vqa", root=tmp_path).read_text() == "cached"
    assert build_dataset("digits-vqa", root=tmp_path, overwrite=True).read_bytes() == (
        built.read_bytes()
    )


@pytest.mark.parametrize("name", ["digits-vqa", "emoji-pairs-vqa", "emoji-subgroups"])
def test_the_classify_configs_load_and_name_frozen_pretrained_towers(name):
    from pathlib import Path

    from jointspace.classifier.config import ClassifyConfig

    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    config = ClassifyConfig.from_yaml(path)
    assert ClassifyConfig.from_dict(config.to_dict()) == config
    towers = config.towers.model.towers
    assert (towers["text"].name, towers["text"].params["path"]) == ("hf_text", "all-MiniLM-L6-v2")
    assert towers["image"].name == "efficientnet_lite0" and not config.towers.train
    # EfficientNet's stride is 32: 128 px gives a 4×4 patch grid, left and right apart.
    assert towers["image"].params["image_size"] // 32 == 4 and config.towers.inputs == "tokens"
    assert config.head.name == "attention"
    vqa = name.endswith("-vqa")
    assert config.data.manifest == ("builtin:" + name if vqa else "builtin:emoji")
    assert config.data.group_column == ("meta_question_type" if vqa else None)
    splits = (config.data.train_split, config.data.val_split, config.data.test_split)
    assert splits == ("train", "val", "test")  # emoji's zeroshot subgroups stay out
    assert f"jointspace classify configs/{name}.yaml" in path.read_text()

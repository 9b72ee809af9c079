import pytest

from jointspace.data import build_dataset, read_manifest
from jointspace.data.builtin.emoji_pairs_vqa import check_answers_trained
from jointspace.data.manifest import ManifestError

NEEDS = {"left_of": "both", "right_of": "both", "there": "both", "left": "image"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa")
    return build_dataset("emoji-pairs-vqa", root=root), build_dataset("emoji-pairs", root=root)


@pytest.fixture(scope="module")
def rows(built):
    return read_manifest(built[0], required=("text", "image")).rows


def test_every_answer_is_right_recomputed_from_the_pairs(built, rows):
    vqa, pairs = built
    # Ground truth: emoji-pairs' own rows, "LEFT left of RIGHT", keyed by the image id.
    truth = {r["id"]: r for r in read_manifest(pairs).rows}
    names = {n for r in truth.values() for n in r["text"].split(" left of ")}
    assert len(rows) == 4 * len(truth) == 9600
    assert list(rows[0]) == [
        "id", "image", "text", "label", "split", "meta_question_type", "meta_needs"
    ]  # fmt: skip
    for row in rows:
        kind = row["meta_question_type"]
        key = row["id"].removesuffix(f"-{kind}")
        left, right = truth[key]["text"].split(" left of ")
        assert row["meta_needs"] == NEEDS[kind] and row["image"] == f"images/{key}.png"
        assert row["split"] == truth[key]["split"]  # emoji-pairs' splits, unchanged
        text, label = row["text"], row["label"]
        if kind == "left_of":
            assert (text, label) == (f"what is left of the {right}?", left)
        elif kind == "right_of":
            assert (text, label) == (f"what is right of the {left}?", right)
        elif kind == "left":
            assert (text, label) == ("what is on the left?", left)
        else:
            x = text.removeprefix("is there ").removesuffix("?").split(" ", 1)[1]
            assert x in names and label == ("yes" if x in (left, right) else "no")
    # The same pictures as emoji-pairs, byte for byte.
    for key in ("027-094", "094-027"):
        image = (vqa.parent / "images" / f"{key}.png").read_bytes()
        assert image == (pairs.parent / "images" / f"{key}.png").read_bytes()
    assert {r["meta_question_type"] for r in rows} == set(NEEDS)


def test_there_is_balanced_and_its_negatives_are_other_emoji(rows):
    there = [r for r in rows if r["meta_question_type"] == "there"]
    answers = [r["label"] for r in there]
    assert answers.count("yes") == len(there) // 2 == 1200
    for name in ("train", "val", "test"):
        share = [r["label"] for r in there if r["split"] == name]
        assert abs(share.count("yes") / len(share) - 0.5) < 0.06, name
    asked = {r["text"] for r in there if r["label"] == "no"}
    assert len(asked) > 100  # many different emoji, not one stock negative


def test_splits_are_by_image_and_answers_are_trained(rows):
    split_of: dict[str, set[str]] = {}
    for row in rows:
        split_of.setdefault(row["image"], set()).add(row["split"])
    assert len(split_of) == 2400 and all(len(s) == 1 for s in split_of.values())
    counts = {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "val", "test")}
    assert counts == {"train": 7680, "val": 960, "test": 960}
    trained = {r["label"] for r in rows if r["split"] == "train"}
    for name in ("val", "test"):
        assert {r["label"] for r in rows if r["split"] == name} <= trained
    # The builder refuses a set whose val/test answers training never shows.
    broken = [dict(rows[0], split="train"), dict(rows[1], split="test", label="kraken")]
    with pytest.raises(ManifestError, match="kraken"):
        check_answers_trained(broken)


def test_build_is_deterministic(built, tmp_path):
    again = build_dataset("emoji-pairs-vqa", root=tmp_path)
    assert again.read_bytes() == built[0].read_bytes()

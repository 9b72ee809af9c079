import hashlib
from collections import defaultdict

import pytest

from jointspace.data import build_dataset, read_manifest
from jointspace.data.builtin.emoji import assign_splits, load_emoji


@pytest.fixture(scope="module")
def emoji():
    return load_emoji()


def test_sources_give_names_keywords_and_subgroups(emoji):
    by_name = {e.name: e for e in emoji}
    shoe = by_name["running shoe"]
    assert shoe.chars == "\U0001f45f" and shoe.subgroup == "clothing"
    assert {"sneaker", "athletic", "shoe"} <= set(shoe.keywords)
    assert by_name["red apple"].subgroup == "food-fruit"
    assert len(emoji) > 3000 and all(e.group != "Component" for e in emoji)


def test_held_out_subgroups_never_reach_training(emoji):
    splits = assign_splits(emoji)
    by_subgroup = defaultdict(set)
    for e, split in zip(emoji, splits, strict=True):
        by_subgroup[e.subgroup].add(split)
    held = {s for s, found in by_subgroup.items() if "zeroshot" in found}
    assert len(held) >= 5
    assert all(by_subgroup[s] == {"zeroshot"} for s in held)  # a held-out subgroup is whole


def test_skin_tone_and_gender_variants_share_a_split(emoji):
    splits = dict(zip((e.name for e in emoji), assign_splits(emoji), strict=True))
    runners = [n for n in splits if "running" in n and "shoe" not in n]
    assert len(runners) > 10  # person/man/woman running × five skin tones
    assert len({splits[n] for n in runners}) == 1


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.*"))}


def test_build_is_deterministic_and_a_standard_manifest(tmp_path):
    first = build_dataset("emoji", root=tmp_path / "a", limit=40)
    second = build_dataset("emoji", root=tmp_path / "b", limit=40)
    assert digest(first.parent) == digest(second.parent)
    manifest = read_manifest(first, required=("text", "image"))
    assert len(set(manifest.column("image"))) == 40
    assert manifest.rows[0]["text"] == "grinning face" and manifest.rows[0]["meta_emoji"] == "😀"

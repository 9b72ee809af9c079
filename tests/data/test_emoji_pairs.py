import numpy as np
from PIL import Image

from jointspace.data import build_dataset, read_manifest


def test_every_pair_comes_in_both_orders_within_one_split(tmp_path):
    manifest = read_manifest(build_dataset("emoji-pairs", root=tmp_path))
    rows = manifest.rows
    assert len(rows) == 2400 and {r["split"] for r in rows} == {"train", "val", "test"}
    by_id = {r["id"]: r for r in rows}
    for row in rows:
        a, b = row["id"].split("-")
        mirror = by_id[f"{b}-{a}"]
        assert mirror["split"] == row["split"]
        left, right = row["text"].split(" left of ")
        assert mirror["text"] == f"{right} left of {left}"
    image = np.asarray(Image.open(manifest.resolve(rows[0]["image"])))
    mirror = np.asarray(
        Image.open(manifest.resolve(by_id["-".join(rows[0]["id"].split("-")[::-1])]["image"]))
    )
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image[:, :32], mirror[:, 32:]) and np.array_equal(
        image[:, 32:], mirror[:, :32]
    )
    # New combinations of emoji the training split shows: the test pairs are new, the glyphs not.
    seen = {name for r in rows if r["split"] == "train" for name in r["text"].split(" left of ")}
    tested = {name for r in rows if r["split"] == "test" for name in r["text"].split(" left of ")}
    assert tested <= seen

import json
import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jointspace.data import ManifestError, read_manifest


def write_image(path, size=(6, 6), mode="RGB"):
    Image.fromarray(np.full((*size, 3), 128, dtype=np.uint8)).convert(mode).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a", "b", "c"):
        write_image(tmp_path / "img" / f"{name}.png")
    return tmp_path


ROWS = [
    {"id": "1", "image": "img/a.png", "text": "a cat", "label": "cat", "split": "train"},
    {"id": "2", "image": "img/a.png", "text": "a small cat", "label": "cat", "split": "train"},
    {"id": "3", "image": "img/b.png", "text": "a dog", "label": "dog", "split": "test"},
]


def write(folder, rows, name="m.csv"):
    path = folder / name
    frame = pd.DataFrame(rows)
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl", "m.parquet"])
def test_every_format_reads_the_same_rows(folder, name):
    manifest = read_manifest(write(folder, ROWS, name), required=("text", "image"))
    assert manifest.rows == ROWS
    assert manifest.modalities == ["text", "image"]
    assert manifest.resolve("img/a.png") == folder / "img" / "a.png"


def test_ids_are_generated_when_absent(folder):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS]
    manifest = read_manifest(write(folder, rows))
    assert manifest.column("id") == ["0", "1", "2"]


def test_unsupported_suffix_and_missing_file(folder):
    (folder / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match=r"unsupported manifest suffix '.txt'"):
        read_manifest(folder / "m.txt")
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(folder / "nope.csv")


def test_bad_jsonl_line_is_named(folder):
    (folder / "m.jsonl").write_text('{"text": "a"}\n{not json}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl, line 2: not valid JSON"):
        read_manifest(folder / "m.jsonl")


def corrupt(folder):
    (folder / "img" / "junk.png").write_bytes(np.random.default_rng(0).bytes(200))
    return "img/junk.png"


def truncated(folder):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        folder / "img" / "full.png"
    )
    data = (folder / "img" / "full.png").read_bytes()
    (folder / "img" / "cut.png").write_bytes(data[: len(data) // 2])
    return "img/cut.png"


BAD_CASES = {
    "missing image": ("image", lambda f: "img/missing.png", "file not found"),
    "corrupt image": ("image", corrupt, "unreadable or corrupt image"),
    "truncated image": ("image", truncated, "unreadable or corrupt image"),
    "duplicate id": ("id", lambda f: "1", "duplicate id '1' \\(first used in row 1\\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_bad_row_names_file_row_and_column(folder, case):
    column, make_value, message = BAD_CASES[case]
    rows = [dict(r) for r in ROWS]
    rows[2][column] = make_value(folder)
    path = write(folder, rows)
    with pytest.raises(ManifestError, match=rf"m.csv, row 3, column '{column}': {message}") as err:
        read_manifest(path, required=("text", "image"))
    assert "--skip-bad" in str(err.value)


def test_skip_bad_skips_exactly_the_bad_rows(folder, caplog):
    rows = [dict(r) for r in ROWS] + [
        {"id": "4", "image": "img/missing.png", "text": "x", "label": "x", "split": "train"},
        {"id": "5", "image": "", "text": " ", "label": "x", "split": "train"},
        {"id": "6", "image": "img/c.png", "text": "", "label": "x", "split": "train"},
    ]
    with caplog.at_level(logging.WARNING, logger="jointspace"):
        manifest = read_manifest(write(folder, rows), skip_bad=True)
    assert manifest.column("id") == ["1", "2", "3", "6"]  # row 6 lacks its text: still usable
    assert [(p.row, p.column) for p in manifest.skipped] == [(4, "image"), (5, None)]
    assert "row 5: no modality: text, image are all empty" in caplog.text
    assert "skipped 2 of 6 rows" in caplog.text


def test_all_rows_bad_is_an_error_even_with_skip_bad(folder):
    rows = [{"id": "1", "image": "img/missing.png", "text": "x"}]
    with pytest.raises(ManifestError, match="all 1 rows are bad"):
        read_manifest(write(folder, rows), skip_bad=True)


def test_many_problems_are_listed_then_counted(folder):
    rows = [{"id": str(i), "image": "", "text": ""} for i in range(14)]
    with pytest.raises(ManifestError, match=r"14 bad rows") as err:
        read_manifest(write(folder, rows))
    assert "... and 4 more" in str(err.value)


def test_unknown_column_is_refused_even_with_skip_bad(folder):
    rows = [{**r, "imgae": "x"} for r in ROWS]
    with pytest.raises(ManifestError, match=r"unknown column 'imgae' \(known: id, text, image"):
        read_manifest(write(folder, rows), skip_bad=True)
    rows = [{**r, "meta_source": "web"} for r in ROWS]
    assert read_manifest(write(folder, rows)).column("meta_source") == ["web"] * 3


def test_missing_required_column(folder):
    rows = [{k: v for k, v in r.items() if k != "image"} for r in ROWS]
    with pytest.raises(ManifestError, match=r"m.csv: missing column 'image'"):
        read_manifest(write(folder, rows), required=("text", "image"))


def test_split_filters_and_names_available_splits(folder):
    manifest = read_manifest(write(folder, ROWS))
    assert manifest.split("train").column("id") == ["1", "2"]
    assert manifest.splits() == ["test", "train"]
    with pytest.raises(ManifestError, match=r"no rows in split 'val' \(splits: test, train\)"):
        manifest.split("val")
    rows = [{k: v for k, v in r.items() if k != "split"} for r in ROWS]
    with pytest.raises(ManifestError, match="no 'split' column"):
        read_manifest(write(folder, rows)).split("train")


def test_problem_describe_names_file_row_and_column():
    from jointspace.data import Problem

    problem = Problem(5, "image", "file not found: imgs/x.png")
    expected = "data/m.csv, row 5, column 'image': file not found: imgs/x.png"
    assert problem.describe("data/m.csv") == expected
    assert Problem(2, None, "bad").describe("m.csv") == "m.csv, row 2: bad"


def test_unknown_column_mentions_the_meta_prefix(folder):
    rows = [{**r, "source": "web"} for r in ROWS]
    with pytest.raises(ManifestError, match=r"'source'.*prefix extra columns with 'meta_'"):
        read_manifest(write(folder, rows))


def test_parquet_missing_values_become_empty_strings(folder):
    frame = pd.DataFrame(
        {
            "text": ["a cat", "a dog"],
            "label": pd.array([1, None], dtype="Int64"),
            "meta_score": [0.5, float("nan")],
        }
    )
    frame.to_parquet(folder / "m.parquet")
    manifest = read_manifest(folder / "m.parquet")
    assert manifest.column("label") == ["1", ""]
    assert manifest.column("meta_score") == ["0.5", ""]


def test_csv_keeps_values_that_look_like_na_or_numbers(folder):
    (folder / "m.csv").write_text("id,text,label\n007,NA,null\n008,nan,1.50\n")
    manifest = read_manifest(folder / "m.csv")
    assert manifest.rows == [
        {"id": "007", "text": "NA", "label": "null"},
        {"id": "008", "text": "nan", "label": "1.50"},
    ]


def test_jsonl_with_a_byte_order_mark_and_non_utf8_bytes(folder):
    (folder / "m.jsonl").write_bytes('\ufeff{"text": "café"}\n'.encode())
    assert read_manifest(folder / "m.jsonl").column("text") == ["café"]
    (folder / "bad.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match=r"bad.jsonl, line 1: not UTF-8"):
        read_manifest(folder / "bad.jsonl")


def test_absolute_paths_are_kept(folder):
    rows = [{**ROWS[0], "image": str(folder / "img" / "c.png")}]
    manifest = read_manifest(write(folder, rows), required=("image",))
    assert manifest.resolve(manifest.rows[0]["image"]) == folder / "img" / "c.png"


def test_empty_manifest_is_refused_even_with_skip_bad(folder):
    (folder / "m.csv").write_text("id,text\n")
    with pytest.raises(ManifestError, match=r"m\.csv: the manifest has no rows"):
        read_manifest(folder / "m.csv", skip_bad=True)


def png_bytes(color=128, size=(6, 6)):
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, (color, color, color)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_hugging_face_image_structs_are_read_from_their_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": png_bytes(10), "path": "a.png"}, {"bytes": png_bytes(200), "path": None}]
    images.append({"bytes": None, "path": "img/b.png"})
    (tmp_path / "img").mkdir()
    write_image(tmp_path / "img" / "b.png")
    table = pa.table({"text": ["dark", "light", "grey"], "image": images, "label": [0, 1, 2]})
    pq.write_table(table, tmp_path / "hf.parquet")
    manifest = read_manifest(tmp_path / "hf.parquet", required=("image",))
    paths = manifest.column("image")
    assert paths[2] == "img/b.png" and manifest.column("label") == ["0", "1", "2"]
    assert all(p.startswith("hf.files/") and p.endswith(".png") for p in paths[:2])
    assert manifest.resolve(paths[0]).read_bytes() == png_bytes(10)
    again = read_manifest(tmp_path / "hf.parquet")  # the same blobs, nothing rewritten
    assert again.column("image") == paths and len(list((tmp_path / "hf.files").iterdir())) == 2


def test_hugging_face_structs_with_bad_bytes_are_a_row_problem(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": png_bytes(), "path": "a.png"}, {"bytes": b"\x89PNG junk", "path": "b.png"}]
    pq.write_table(pa.table({"text": ["a", "b"], "image": images}), tmp_path / "hf.parquet")
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path / "hf.parquet")
    message = str(caught.value)
    assert "hf.parquet, row 2, column 'image': unreadable or corrupt image" in message
    assert "\\x" not in message and "b'" not in message  # no raw bytes dumped


def test_deeply_nested_jsonl_is_a_clear_error(tmp_path):
    line = '{"text": "a", "meta_x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "m.jsonl").write_text('{"text": "ok"}\n' + line + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl, line 2: JSON nested too deeply"):
        read_manifest(tmp_path / "m.jsonl")


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("m.jsonl", b'{"text": "a", "label": [1, 2]}\n', r"line 1, column 'label': .* got a list"),
        ("m.jsonl", b'{"text": "a", "text": "b"}\n', r"line 1: key 'text' given twice"),
        ("m.jsonl", b'{"text": "a"}\n\x00\x01\x02binary', r"binary data, not JSON lines"),
        ("m.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"m.csv: binary data, not CSV text"),
        ("m.csv", b"id,text,id\n1,a,2\n", r"m.csv: column 'id' appears more than once"),
        ("m.csv", b"id,text\n1,caf\xe9\n", r"m.csv: not UTF-8 text"),
        ("m.csv", b'id,text\n1,"unterminated\n', r"m.csv: cannot read CSV"),
        ("m.csv", b"", r"m.csv: cannot read CSV"),
        ("m.parquet", b"PAR1 not really parquet", r"m.parquet: cannot read Parquet"),
    ],
)
def test_malformed_manifests_are_one_clear_error(tmp_path, name, content, pattern):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ManifestError, match=pattern):
        read_manifest(tmp_path / name)


def test_huge_jsonl_lines_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("jointspace.data.manifest.MAX_LINE_BYTES", 100)
    (tmp_path / "m.jsonl").write_text('{"text": "' + "a" * 200 + '"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl: a line longer than 100 bytes"):
        read_manifest(tmp_path / "m.jsonl")


def test_parquet_with_duplicate_columns_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array(["a"]), pa.array(["b"])], names=["text", "text"])
    pq.write_table(table, tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match=r"m.parquet: column 'text' appears more than once"):
        read_manifest(tmp_path / "m.parquet")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty id"),
        ("   ", "empty id"),
        ("a\x00b", r"id 'a\\x00b' contains the control character U\+0000"),
        ("line\nbreak", r"id 'line\\x0abreak' contains the control character U\+000A"),
        ("../etc/passwd", r"id '../etc/passwd' has a '..' path segment"),
        ("a/../b", r"id 'a/../b' has a '..' path segment"),
    ],
)
def test_ids_that_later_stages_cannot_use_are_row_problems(folder, key, message):
    rows = [{"id": "ok/1", "text": "a"}, {"id": key, "text": "b"}, {"id": "x..y", "text": "c"}]
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ManifestError, match=rf"m.jsonl, row 2, column 'id': {message}") as caught:
        read_manifest(folder / "m.jsonl")
    assert "row 1" not in str(caught.value) and "row 3" not in str(caught.value)


def test_split_overlaps_count_byte_identical_files_per_split_pair(tmp_path):
    from jointspace.data import open_manifest
    from jointspace.data.overlap import split_overlaps

    for name, color in (("a", 1), ("b", 2), ("c", 3)):
        (tmp_path / f"{name}.png").write_bytes(png_bytes(color))
    (tmp_path / "a2.png").write_bytes(png_bytes(1))  # same bytes as a.png
    (tmp_path / "b2.png").write_bytes(png_bytes(2))
    rows = [
        ("a.png", "train"),
        ("b.png", "train"),
        ("c.png", "train"),
        ("a2.png", "test"),
        ("b2.png", "test"),
        ("a.png", "val"),
    ]
    lines = [f"{i},t{i},{image},{split}" for i, (image, split) in enumerate(rows)]
    (tmp_path / "m.csv").write_text("id,text,image,split\n" + "\n".join(lines) + "\n")
    found = split_overlaps(open_manifest(tmp_path / "m.csv"))
    assert [(o.a, o.b, o.count) for o in found] == [
        ("train", "val", 1),
        ("train", "test", 2),
        ("val", "test", 1),
    ]
    assert found[1].examples == [("a2.png", "a.png"), ("b2.png", "b.png")]
    assert (
        "2 image files in split 'test' byte-identical to files in split 'train'"
        in found[1].describe()
    )


def test_empty_modality_cells_mean_absent_and_a_row_needs_one_modality(folder):
    rows = [dict(r) for r in ROWS]
    rows[1]["image"] = ""
    rows[2]["text"] = "  "
    path = write(folder, rows)
    for required in (("text", "image"), ("text",), ("image",), ()):
        # With one modality required, a row lacking it has nothing: named as its column.
        lacking = {
            ("text",): (3, "text", "empty text"),
            ("image",): (2, "image", "empty image path"),
        }
        if required in lacking:
            row, column, message = lacking[required]
            with pytest.raises(ManifestError, match=rf"row {row}, column '{column}': {message}"):
                read_manifest(path, required=required)
            continue
        manifest = read_manifest(path, required=required)
        assert manifest.column("image") == ["img/a.png", "", "img/b.png"]
        assert [manifest.has(i, "text") for i in range(3)] == [True, True, False]
        assert [manifest.has(i, "image") for i in range(3)] == [True, False, True]
    rows[1]["text"] = ""  # row 2 now holds no modality at all
    with pytest.raises(ManifestError, match="row 2: no modality: text, image are all empty"):
        read_manifest(write(folder, rows), required=("text", "image"))
    rows[1]["text"] = "a small cat"
    rows[2]["image"] = "img/missing.png"  # a non-empty cell is still checked
    with pytest.raises(ManifestError, match="row 3, column 'image': file not found"):
        read_manifest(write(folder, rows), required=("text", "image"))

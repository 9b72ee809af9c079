import io
import json
import wave

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jointspace.data import ManifestError, read_manifest
from jointspace.data.formats import (
    convert,
    read_audiocaps,
    read_clotho,
    read_coco,
    read_folder,
    read_hf,
    read_karpathy,
)


def png(path, colour=(255, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


def png_bytes(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(8000), f.writeframes(b"\0\0" * 80)
    return path


@pytest.fixture
def coco(tmp_path):
    a, b = png(tmp_path / "images" / "a.jpg"), png(tmp_path / "images" / "b.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": " A red square. "},
            {"id": 11, "image_id": 1, "caption": "red"},
            {"id": 12, "image_id": 2, "caption": "another one"},
        ],
    }
    (tmp_path / "captions_val2017.json").write_text(json.dumps(data))
    return tmp_path / "captions_val2017.json", a, b


def test_coco_rows(coco):
    src, a, b = coco
    assert read_coco(src, src.parent) == [
        {"id": "10", "text": "A red square.", "image": str(a), "split": "val"},
        {"id": "11", "text": "red", "image": str(a), "split": "val"},
        {"id": "12", "text": "another one", "image": str(b), "split": "val"},
    ]


def test_coco_errors_name_the_key(coco):
    src = coco[0]
    data = json.loads(src.read_text())
    del data["annotations"][1]["caption"]
    src.write_text(json.dumps(data))
    with pytest.raises(
        ManifestError, match=r"captions_val2017.json: annotation 1 has no 'caption'"
    ):
        read_coco(src, src.parent)
    data["annotations"][1] = {"id": 11, "image_id": 7, "caption": "x"}
    src.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"annotation 1 has unknown image_id 7"):
        read_coco(src, src.parent)


def test_karpathy_rows(tmp_path):
    img = png(tmp_path / "images" / "flickr" / "1.jpg")
    data = {
        "dataset": "flickr30k",
        "images": [
            {
                "filename": "1.jpg",
                "filepath": "flickr",
                "split": "restval",
                "imgid": 0,
                "sentences": [{"raw": "Two dogs run.", "sentid": 0}, {"raw": "dogs", "sentid": 1}],
            },
        ],
    }
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(data))
    assert read_karpathy(tmp_path / "dataset_flickr30k.json", tmp_path) == [
        {"id": "0", "text": "Two dogs run.", "image": str(img), "split": "train"},
        {"id": "1", "text": "dogs", "image": str(img), "split": "train"},
    ]


def test_hf_saved_dataset_with_image_bytes(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array(
                [
                    {"bytes": png_bytes((1, 2, 3)), "path": None},
                    {"bytes": png_bytes((4, 5, 6)), "path": None},
                ],
                image_type,
            ),
            "caption": [["a", "b"], ["c"]],
            "label": [3, 4],
        }
    )
    with pa.ipc.new_stream(str(folder / "data-00000-of-00001.arrow"), table.schema) as writer:
        writer.write_table(table)
    out = tmp_path / "out"
    rows = read_hf(folder, out)
    files = out / "files"
    assert rows == [
        {
            "id": "0-0",
            "text": "a",
            "image": str((files / "000000.png").resolve()),
            "label": "3",
            "split": "",
        },
        {
            "id": "0-1",
            "text": "b",
            "image": str((files / "000000.png").resolve()),
            "label": "3",
            "split": "",
        },
        {
            "id": "1",
            "text": "c",
            "image": str((files / "000001.png").resolve()),
            "label": "4",
            "split": "",
        },
    ]
    assert Image.open(files / "000001.png").getpixel((0, 0)) == (4, 5, 6)


def test_hf_parquet_with_paths_and_missing_columns(tmp_path):
    png(tmp_path / "x.png")
    pq.write_table(pa.table({"image_path": ["x.png"], "text": ["hi"]}), tmp_path / "d.parquet")
    assert read_hf(tmp_path / "d.parquet", tmp_path) == [
        {"id": "0", "text": "hi", "image": str(tmp_path / "x.png"), "label": "", "split": ""}
    ]
    pq.write_table(pa.table({"picture": ["x.png"], "text": ["hi"]}), tmp_path / "e.parquet")
    with pytest.raises(ManifestError, match=r"no image column among 'picture', 'text'"):
        read_hf(tmp_path / "e.parquet", tmp_path)


def test_folder_rows_and_empty_folder(tmp_path):
    cat = png(tmp_path / "data" / "tabby_cat" / "1.png")
    dog = png(tmp_path / "data" / "dog" / "a.jpg")
    (tmp_path / "data" / "dog" / "notes.txt").write_text("ignored")
    assert read_folder(tmp_path / "data", tmp_path) == [
        {"id": "dog/a", "text": "a photo of a dog", "image": str(dog), "label": "dog", "split": ""},
        {
            "id": "tabby_cat/1",
            "text": "a photo of a tabby cat",
            "image": str(cat),
            "label": "tabby_cat",
            "split": "",
        },
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no class folders with images"):
        read_folder(tmp_path / "empty", tmp_path)


def test_clotho_and_audiocaps_rows(tmp_path):
    clip = wav(tmp_path / "development" / "rain.wav")
    (tmp_path / "clotho_captions_development.csv").write_text(
        "file_name,caption_1,caption_2\nrain.wav,rain falls,water drips\n"
    )
    assert read_clotho(tmp_path / "clotho_captions_development.csv", tmp_path) == [
        {"id": "rain-1", "text": "rain falls", "audio": str(clip), "split": "train"},
        {"id": "rain-2", "text": "water drips", "audio": str(clip), "split": "train"},
    ]
    clip = wav(tmp_path / "test" / "91.wav")
    (tmp_path / "test.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n91,yt1,30,a dog barks\n"
    )
    assert read_audiocaps(tmp_path / "test.csv", tmp_path) == [
        {"id": "91", "text": "a dog barks", "audio": str(clip), "split": "test"}
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_convert_round_trips_with_relative_paths(coco, suffix):
    src = coco[0]
    out = convert(src, "coco", src.parent / f"manifest{suffix}")
    manifest = read_manifest(out, required=("text", "image"))
    assert manifest.column("image") == ["images/a.jpg", "images/a.jpg", "images/b.jpg"]
    assert manifest.column("text")[0] == "A red square." and manifest.column("split") == ["val"] * 3


def test_convert_unknown_format(coco):
    with pytest.raises(
        ManifestError, match=r"unknown format 'yolo'; known: audiocaps, clotho, coco"
    ):
        convert(coco[0], "yolo", coco[0].parent / "m.csv")


def jpeg_bytes(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_hf_parquet_image_structs_and_overrides(tmp_path):
    png(tmp_path / "pics" / "p.png")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = [
        {"bytes": jpeg_bytes((9, 9, 9)), "path": "x.jpg"},
        {"bytes": None, "path": "pics/p.png"},
    ]
    table = pa.table(
        {
            "photo": pa.array(images, image_type),
            "alt": [" first ", "second"],
            "text": ["ignored", "ignored"],
            "id": ["a", "b"],
            "split": ["train", "test"],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    out = tmp_path / "out"
    rows = read_hf(tmp_path / "d.parquet", out, text_column="alt", image_column="photo")
    assert rows == [
        {
            "id": "a",
            "text": "first",
            "image": str(out / "files" / "000000.jpg"),
            "label": "",
            "split": "train",
        },
        {
            "id": "b",
            "text": "second",
            "image": str(tmp_path / "pics" / "p.png"),
            "label": "",
            "split": "test",
        },
    ]
    assert (out / "files" / "000000.jpg").read_bytes() == images[0]["bytes"]


def test_hf_errors_list_the_columns(tmp_path):
    pq.write_table(pa.table({"image": ["x.png"], "words": ["hi"]}), tmp_path / "d.parquet")
    with pytest.raises(ManifestError, match=r"d.parquet: no text column among 'image', 'words'"):
        read_hf(tmp_path / "d.parquet", tmp_path)
    with pytest.raises(ManifestError, match=r"no text column among .* \(wanted 'body'\)"):
        read_hf(tmp_path / "d.parquet", tmp_path, text_column="body")
    pq.write_table(pa.table({"image": [b"junk"], "text": ["hi"]}), tmp_path / "e.parquet")
    with pytest.raises(ManifestError, match=r"e.parquet, row 0, column 'image': embedded bytes"):
        read_hf(tmp_path / "e.parquet", tmp_path)


def test_hf_dataset_dict_splits_and_convert_relative_files(tmp_path):
    for split, colour in (("train", (1, 1, 1)), ("validation", (2, 2, 2))):
        folder = tmp_path / "ds" / split
        folder.mkdir(parents=True)
        (folder / "state.json").write_text("{}")
        table = pa.table({"img": [png_bytes(colour)], "sentence": [f"{split} pic"]})
        with pa.ipc.new_file(str(folder / "data-00000-of-00001.arrow"), table.schema) as writer:
            writer.write_table(table)  # the Arrow *file* format: read through the fallback
    out = convert(tmp_path / "ds", "hf", tmp_path / "m" / "manifest.jsonl")
    manifest = read_manifest(out)
    assert manifest.columns == ["id", "text", "image", "split"]
    assert [(r["id"], r["text"], r["image"], r["split"]) for r in manifest.rows] == [
        ("0", "train pic", "files/000000.png", "train"),
        ("1", "validation pic", "files/000001.png", "val"),
    ]


def test_karpathy_without_filepath_and_missing_key(tmp_path):
    img = png(tmp_path / "elsewhere" / "2.jpg")
    image = {"filename": "2.jpg", "split": "val", "sentences": [{"raw": " a b ", "sentid": 7}]}
    src = tmp_path / "dataset_coco.json"
    src.write_text(json.dumps({"images": [image]}))
    assert read_karpathy(src, tmp_path, images_dir=tmp_path / "elsewhere") == [
        {"id": "7", "text": "a b", "image": str(img), "split": "val"}
    ]
    del image["sentences"][0]["raw"]
    src.write_text(json.dumps({"images": [image]}))
    with pytest.raises(ManifestError, match=r"dataset_coco.json: image 0 sentence 0 has no 'raw'"):
        read_karpathy(src, tmp_path)
    src.write_text("{not json")
    with pytest.raises(ManifestError, match=r"dataset_coco.json: not valid JSON"):
        read_karpathy(src, tmp_path)


def test_audiocaps_falls_back_to_youtube_id_and_converts(tmp_path):
    clip = wav(tmp_path / "train" / "ytA.wav")
    (tmp_path / "train.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n5,ytA,0,birds\n"
    )
    assert read_audiocaps(tmp_path / "train.csv", tmp_path) == [
        {"id": "5", "text": "birds", "audio": str(clip), "split": "train"}
    ]
    manifest = read_manifest(convert(tmp_path / "train.csv", "audiocaps", tmp_path / "a.csv"))
    assert manifest.columns == ["id", "text", "audio", "split"]
    assert manifest.column("audio") == ["train/ytA.wav"]
    (tmp_path / "bad.csv").write_text("youtube_id,caption\nx,y\n")
    with pytest.raises(ManifestError, match=r"bad.csv: no column 'audiocap_id'"):
        read_audiocaps(tmp_path / "bad.csv", tmp_path)


def test_folder_template_and_parquet_round_trip(tmp_path):
    png(tmp_path / "data" / "red-fox" / "z.webp")
    out = convert(tmp_path / "data", "folder", tmp_path / "f.parquet", template="{label}!")
    manifest = read_manifest(out)
    assert manifest.rows == [
        {"id": "red-fox/z", "text": "red fox!", "image": "data/red-fox/z.webp", "label": "red-fox"}
    ]


def test_convert_keeps_paths_outside_the_manifest_folder_absolute(coco):
    src, a, _ = coco
    out = convert(src, "coco", src.parent / "sub" / "m.csv")
    assert read_manifest(out).column("image")[0] == str(a)

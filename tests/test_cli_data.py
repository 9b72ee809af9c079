import json

from typer.testing import CliRunner

from jointspace.cli import app

runner = CliRunner()


def test_validate_exit_codes(tmp_path, digits_manifest):
    assert runner.invoke(app, ["data", "validate", str(digits_manifest)]).exit_code == 0
    bad = tmp_path / "m.csv"
    bad.write_text("id,text,image\n1,,missing.png\n")
    result = runner.invoke(app, ["data", "validate", str(bad)])
    assert result.exit_code == 1 and "row 1, column 'image': file not found" in result.output


def test_inspect_reports_duplicates_and_failures(tmp_path, digits_manifest):
    images = digits_manifest.parent / "images"
    (tmp_path / "copy.png").write_bytes((images / "0000.png").read_bytes())
    rows = [
        "id,text,image,label",
        f"1,a handwritten 0,{images / '0000.png'},zero",
        f"2,A handwritten 0!,{tmp_path / 'copy.png'},zero",
        f"3,the digit one,{images / '0001.png'},one",
        f"4,gone,{tmp_path / 'gone.png'},one",
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    args = ["data", "inspect", str(manifest), "--json", str(tmp_path / "r.json")]
    result = runner.invoke(app, [*args, "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows"] == 4 and report["labels"]["top"] == {"zero": 2, "one": 2}
    assert report["captions"]["near_duplicates"] == [["A handwritten 0!", "a handwritten 0"]]
    assert len(report["images"]["duplicates"]) == 1
    assert report["images"]["sizes"] == {"8x8": 3}
    assert len(report["problems"]) == 1 and "row 4, column 'image'" in report["problems"][0]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "caption_words.png",
        "image_sizes.png",
        "labels.png",
    ]


def test_build_and_convert(tmp_path):
    result = runner.invoke(app, ["data", "build", "digits", "--root", str(tmp_path)])
    assert result.exit_code == 0 and result.output.strip().endswith("digits/manifest.csv")
    (tmp_path / "cats" / "tabby").mkdir(parents=True)
    (tmp_path / "cats" / "tabby" / "1.png").write_bytes(
        (tmp_path / "digits" / "images" / "0000.png").read_bytes()
    )
    out = tmp_path / "cats.parquet"
    args = ["data", "convert", str(tmp_path / "cats"), "--format", "folder", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 1 rows" in result.output and out.is_file()

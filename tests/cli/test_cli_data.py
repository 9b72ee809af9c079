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


def write_manifest(path, header, rows):
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_validate_refuses_an_empty_id_with_its_row(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", "id,text", [("a", "x"), (" ", "y")])
    result = runner.invoke(app, ["data", "validate", str(manifest)])
    assert result.exit_code == 1
    assert "m.csv, row 2, column 'id': empty id" in result.output
    assert "Traceback" not in result.output


def test_every_command_the_skip_hint_names_has_the_flag(tmp_path):
    from jointspace.data.manifest import SKIP_HINT

    manifest = write_manifest(tmp_path / "m.csv", "id,text", [("a", "x"), ("b", "")])
    result = runner.invoke(app, ["data", "validate", str(manifest)])
    assert result.exit_code == 1 and SKIP_HINT in " ".join(result.output.split())
    named = SKIP_HINT.split("pass --skip-bad to ")[1].replace(" or ", ", ").split(", ")
    assert named == ["train", "eval", "embed", "data validate"]
    for command in named:
        help_text = runner.invoke(app, [*command.split(), "--help"], terminal_width=200).output
        assert "--skip-bad" in help_text, command
    result = runner.invoke(app, ["data", "validate", str(manifest), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: skipping" in result.output and "row 2, column 'text': empty text" in result.output
    )
    assert "1 of 2 rows usable, 1 skipped" in result.output


def test_validate_and_inspect_warn_about_files_shared_between_splits(tmp_path, digits_manifest):
    images = digits_manifest.parent / "images"
    (tmp_path / "copy.png").write_bytes((images / "0000.png").read_bytes())
    rows = [
        ("1", "zero", str(images / "0000.png"), "train"),
        ("2", "one", str(images / "0001.png"), "train"),
        ("3", "zero again", str(tmp_path / "copy.png"), "test"),
        ("4", "two", str(images / "0002.png"), "test"),
    ]
    manifest = write_manifest(tmp_path / "m.csv", "id,text,image,split", rows)
    result = runner.invoke(app, ["data", "validate", str(manifest)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "warning: 1 image file in split 'test' byte-identical to files in split 'train'" in (
        result.output
    )
    args = ["data", "inspect", str(manifest), "--json", str(tmp_path / "r.json")]
    assert runner.invoke(app, args).exit_code == 0
    overlap = json.loads((tmp_path / "r.json").read_text())["split_overlap"]
    assert overlap == [
        {
            "column": "image",
            "splits": ["train", "test"],
            "count": 1,
            "examples": [[str(tmp_path / "copy.png"), str(images / "0000.png")]],
        }
    ]


def test_build_help_lists_every_registered_builtin():
    from jointspace.registry import available

    names = available("dataset")
    assert len(names) >= 4
    result = runner.invoke(app, ["data", "build", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert ", ".join(names) in text


def test_build_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "notes.txt").write_text("mine")
    args = ["data", "build", "digits", "--root", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "notes.txt" in result.output and "--force" in result.output
    assert (tmp_path / "digits" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "digits" / "manifest.csv").exists()
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert (tmp_path / "digits" / "manifest.csv").is_file()


def test_convert_exposes_reader_options_and_never_overwrites_silently(tmp_path, digits_manifest):
    (tmp_path / "cats" / "tabby").mkdir(parents=True)
    (tmp_path / "cats" / "tabby" / "1.png").write_bytes(
        (digits_manifest.parent / "images" / "0000.png").read_bytes()
    )
    out = tmp_path / "cats.csv"
    out.write_text("my own file\n")
    base = ["data", "convert", str(tmp_path / "cats"), "--format", "folder", "--out", str(out)]
    result = runner.invoke(app, [*base, "--template", "a cat called {label}"])
    assert result.exit_code == 1 and "already exists; pass --force" in result.output
    assert out.read_text() == "my own file\n"
    result = runner.invoke(app, [*base, "--template", "a cat called {label}", "--force"])
    assert result.exit_code == 0, result.output
    assert "a cat called tabby" in out.read_text()
    result = runner.invoke(app, [*base, "--force", "--text-column", "x"])
    assert result.exit_code == 1
    assert "--text-column does not apply to format folder (it takes: --template)" in result.output
    help_text = runner.invoke(app, ["data", "convert", "--help"], terminal_width=200).output
    for option in ("--images-dir", "--audio-dir", "--text-column", "--image-column", "--template"):
        assert option in help_text


def test_the_data_cli_keeps_heavy_imports_inside_commands():
    import ast
    from pathlib import Path

    import jointspace.cli.data as module

    tree = ast.parse(Path(module.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module)
    light = {"__future__", "json", "pathlib", "typing", "typer", "rich.console", "rich.markup"}
    assert top <= light | {"rich.table", "typer.core", "jointspace.cli.errors"}, top


def test_inspect_never_overwrites_a_report_or_charts_without_force(tmp_path, digits_manifest):
    (tmp_path / "r.json").write_text("mine")
    args = ["data", "inspect", str(digits_manifest), "--json", str(tmp_path / "r.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "r.json already exists; pass --force" in result.output
    assert (tmp_path / "r.json").read_text() == "mine"
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "labels.png").write_text("mine")
    plots = ["data", "inspect", str(digits_manifest), "--plots", str(tmp_path / "plots")]
    assert runner.invoke(app, plots).exit_code == 1
    assert (tmp_path / "plots" / "labels.png").read_text() == "mine"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert json.loads((tmp_path / "r.json").read_text())["rows"] > 0

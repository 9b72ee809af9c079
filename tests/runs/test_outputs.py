import json

import pytest

from jointspace.runs.outputs import (
    MARKER,
    OutputExistsError,
    claim_dir,
    claim_file,
    mark_dir,
    prepare_dir,
)


def test_new_or_empty_directories_are_free(tmp_path):
    assert claim_dir(tmp_path / "new", "demo", force=False) is False
    (tmp_path / "empty").mkdir()
    assert claim_dir(tmp_path / "empty", "demo", force=False) is False


def test_own_finished_output_needs_force_and_is_then_replaced(tmp_path):
    out = tmp_path / "demo"
    prepare_dir(out, "demo", force=False)
    (out / "model").mkdir()
    (out / "config.yaml").write_text("x")
    mark_dir(out, "demo")
    assert json.loads((out / MARKER).read_text())["entries"] == ["config.yaml", "model"]
    with pytest.raises(OutputExistsError, match="pass --force"):
        prepare_dir(out, "demo", force=False)
    assert (out / "config.yaml").exists()
    prepare_dir(out, "demo", force=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_force_never_takes_what_the_command_did_not_write(tmp_path):
    out = tmp_path / "demo"
    prepare_dir(out, "demo", force=False)
    (out / "model").mkdir()
    mark_dir(out, "demo")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"notes\.txt"):
        prepare_dir(out, "demo", force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model").is_dir()
    assert claim_dir(out, "demo", force=True, allowed=("notes.txt",)) is True


def test_another_commands_or_unmarked_directory_is_refused(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "config.yaml").write_text("run")
    with pytest.raises(OutputExistsError, match="was not written by `jointspace demo`"):
        claim_dir(out, "demo", force=True)
    mark_dir(out, "report")
    with pytest.raises(OutputExistsError, match="was not written by `jointspace demo`"):
        claim_dir(out, "demo", force=True)


def test_a_killed_output_counts_as_the_commands_own(tmp_path):
    out = tmp_path / "compare"
    prepare_dir(out, "compare", force=False)  # marker without entries: killed before the end
    (out / "clip").mkdir()
    assert claim_dir(out, "compare", force=True) is True


def test_files(tmp_path):
    path = tmp_path / "m.json"
    claim_file(path, force=False)
    path.write_text("{}")
    with pytest.raises(OutputExistsError, match="already exists"):
        claim_file(path, force=False)
    claim_file(path, force=True)
    with pytest.raises(OutputExistsError, match="is a directory"):
        claim_file(tmp_path, force=True)

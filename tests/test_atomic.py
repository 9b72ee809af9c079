import errno
import os
import stat

import pytest

from jointspace.atomic import atomic_dir, atomic_path, write_bytes, write_text_atomic
from jointspace.errors import DiskFullError


class Crash(Exception):
    pass


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old")
    with pytest.raises(Crash), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Crash()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_directory_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(Crash), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2-partial")
        raise Crash()
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_written_files_and_directories_get_the_usual_modes(tmp_path, umask_022):
    write_text_atomic(tmp_path / "config.yaml", "x")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("v1")
    with atomic_path(tmp_path / "index.faiss") as tmp:
        tmp.write_bytes(b"\0")
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "index.faiss").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_target_and_keeps_the_old_version(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old")
    monkeypatch.setattr("jointspace.atomic.os.write", enospc)
    with pytest.raises(
        DiskFullError, match=r"no space left .* writing .*metrics.json; the previous"
    ):
        write_text_atomic(target, "new")
    full = pytest.raises(DiskFullError, match=r"writing .*model; the previous version is intact")
    with full, atomic_dir(tmp_path / "model") as tmp:
        write_bytes(tmp / "weights", b"x")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # temp files removed


def test_safetensors_saves_translate_a_full_disk(tmp_path, monkeypatch):
    import torch

    from jointspace.artifacts import save_tensors

    monkeypatch.setattr("jointspace.atomic.os.write", enospc)
    full = pytest.raises(DiskFullError, match=r"shard\.safetensors")
    with full, atomic_path(tmp_path / "shard.safetensors") as tmp:
        save_tensors(tmp, {"x": torch.ones(3)})
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_are_removed_and_nothing_else(tmp_path):
    from jointspace.atomic import recover_dir, remove_stale_temps

    (tmp_path / ".model.ab12cd_z.tmp").mkdir()
    (tmp_path / ".step-0000100.x1y2z3w4.tmp").mkdir()
    (tmp_path / ".metrics.csv.q9w8e7r6.tmp").write_text("half")
    keep = ["notes.tmp", ".hidden.tmp", ".notes.txt", "data.ab12cd34.tmp", "model"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    assert len(remove_stale_temps(tmp_path)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    # A kill between atomic_dir's two renames leaves only `.model.old`: it is put back.
    (tmp_path / "model").unlink()
    (tmp_path / ".model.old").mkdir()
    recover_dir(tmp_path / "model")
    assert (tmp_path / "model").is_dir() and not (tmp_path / ".model.old").exists()

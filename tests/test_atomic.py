import pytest

from jointspace.atomic import atomic_dir, atomic_path, write_text_atomic


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

"""Milvus Lite: an index built by one process can be searched by the next."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jointspace.index import FilterError, open_index
from jointspace.index.errors import ReadOnlyIndexError

BUILD = """
import sys, numpy as np
from jointspace.index import open_index
index = open_index(sys.argv[1], dim=8, mode="w", model="m1")
x = np.eye(8, dtype="float32")
index.add([f"dir/item-{i}" for i in range(8)], x, [{"label": str(i % 2)} for i in range(8)])
index.close()
"""


def test_a_milvus_lite_index_reopens_in_another_process(tmp_path):
    uri = f"milvus://{tmp_path / 'x.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", BUILD, uri], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    index = open_index(uri)  # on main: "Collection … is in state 'released'" at search
    assert index.info["model"] == "m1" and len(index) == 8
    hits = index.search(np.eye(8, dtype=np.float32)[3], k=2, filter='label == "1"')[0]
    assert hits[0].id == "dir/item-3" and all(h.metadata["label"] == "1" for h in hits)
    with pytest.raises(FilterError, match="unknown field colour; known fields: label"):
        index.search(np.zeros(8), filter='colour == "red"')
    with pytest.raises(ReadOnlyIndexError):
        index.delete(["dir/item-3"])
    index.close()


HOLD = """
import sys, time
from jointspace.index import open_index
index = open_index(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


def test_a_milvus_lite_database_open_elsewhere_is_one_clear_error(tmp_path):
    from jointspace.index.errors import BackendError

    uri = f"milvus://{tmp_path / 'x.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", BUILD, uri], env=env).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, uri], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(BackendError, match=r"x\.db is open in another process"):
            open_index(uri)
    finally:
        holder.kill()
        holder.wait()
    again = open_index(uri)
    assert len(again) == 8
    again.close()

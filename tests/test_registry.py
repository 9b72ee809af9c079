"""The registry: one explicit table, lazy imports, one way to build any part, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import tiny_config
from jointspace import registry
from jointspace.errors import JointspaceError
from jointspace.index import IndexUriError, open_index
from jointspace.parts import BUILTIN_PARTS
from jointspace.registry import UnknownPartError, available, build, lookup, register

# The console script, in a fresh interpreter that imports only the CLI before the command runs.
CLI = "import sys; from jointspace.cli import main; sys.argv[0] = 'jointspace'; main()"


def run_python(script, *args):
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_table_entry_names_an_existing_callable():
    for kind, names in BUILTIN_PARTS.items():
        assert available(kind) == sorted(names)
        for name in names:
            assert callable(lookup(kind, name)), (kind, name)


def test_importing_every_module_registers_nothing_and_lookups_import_only_their_module():
    script = """
import json, sys, pkgutil, importlib
import jointspace
from jointspace import registry
before = sorted(m for m in sys.modules if m.startswith("jointspace."))
registry.lookup("objective", "dcca")
loaded = sorted(m for m in sys.modules if m.startswith("jointspace.") and m not in before)
skip = ("jointspace.serve", "jointspace.report", "jointspace.runs.demo", "jointspace.cli.__main__")
for info in pkgutil.walk_packages(jointspace.__path__, "jointspace."):
    if not info.name.startswith(skip):
        importlib.import_module(info.name)
print(json.dumps({"loaded": loaded, "user": {k: list(v) for k, v in registry._USER.items()}}))
"""
    out = run_python(script)
    assert out["user"] == {}  # built-ins come from the table, not from import side effects
    assert "jointspace.objectives.cca" in out["loaded"]
    assert not [m for m in out["loaded"] if m.startswith(("jointspace.data", "jointspace.train"))]


def test_unknown_names_are_one_user_error_listing_the_known_ones():
    with pytest.raises(UnknownPartError) as caught:
        build("objective", "dca")
    err = caught.value
    assert isinstance(err, JointspaceError) and isinstance(err, KeyError)
    assert str(err) == "unknown objective 'dca'; known objectives: clip, dcca, siglip, triplet"
    with pytest.raises(UnknownPartError, match="known index back-ends: faiss, milvus"):
        lookup("index", "qdrant")
    with pytest.raises(UnknownPartError, match="known nopes: none"):
        lookup("nope", "x")


def test_users_register_their_own_parts_and_cannot_shadow_built_ins():
    class Echo:
        def __init__(self, word="hi"):
            self.word = word

    try:
        register("objective", "echo")(Echo)
        assert build("objective", "echo", word="yo").word == "yo"
        assert "echo" in available("objective")
        register("miner", "lazy-all", "jointspace.objectives.miners:AllMiner")
        assert lookup("miner", "lazy-all") is lookup("miner", "all")
        with pytest.raises(ValueError, match="already registered"):
            register("objective", "clip", Echo)
        with pytest.raises(TypeError, match="cannot build objective 'echo' with \\['colour'\\]"):
            build("objective", "echo", colour=1)
    finally:
        registry.unregister("objective", "echo")
        registry.unregister("miner", "lazy-all")
    assert "echo" not in available("objective")


def test_index_back_ends_are_built_through_the_registry(tmp_path):
    opened = []

    def open_memory(location, dim, options, **kwargs):
        opened.append((location, dim, options, kwargs["mode"]))
        return "a memory index"

    open_memory.options = ("size",)
    try:
        register("index", "memory", open_memory)
        assert open_index("memory://here?size=3", dim=4, mode="w") == "a memory index"
        assert opened == [("here", 4, {"size": "3"}, "w")]
        with pytest.raises(IndexUriError, match=r"unknown option 'kind'.*memory takes size"):
            open_index("memory://here?kind=hnsw")
    finally:
        registry.unregister("index", "memory")
    with pytest.raises(IndexUriError, match="use faiss:// or milvus://"):
        open_index("memory://here")
    index = build("index", "faiss", location=str(tmp_path / "i"), dim=3, options={}, mode="w")
    index.add(["a"], np.eye(3, dtype=np.float32)[:1])
    index.close()
    assert open_index(f"faiss://{tmp_path / 'i'}").ids() == {"a"}


def test_importing_objectives_leaves_out_trainer_evaluator_and_datasets():
    script = """
import json, sys
import jointspace.objectives
from jointspace.config import ObjectiveConfig
from jointspace.objectives.combined import build_objective
from jointspace.registry import available, build
build_objective([ObjectiveConfig(n) for n in available("objective")])
build("objective", "triplet", miner="semi_hard")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("jointspace."))))
"""
    loaded = run_python(script)
    assert "jointspace.objectives.cca" in loaded
    heavy = ("jointspace.train", "jointspace.evaluate", "jointspace.data", "jointspace.runs")
    assert [m for m in loaded if m.startswith(heavy)] == []


MINED = {"miner": "semi_hard"}


def test_train_with_dcca_and_with_every_objective_from_a_fresh_process(tmp_path, digits_manifest):
    # Issue 14: `objectives: [{name: dcca}]` failed with "unknown objective 'dcca'".
    runs = {
        "dcca": [{"name": "dcca"}],
        "all": [
            {
                "name": name,
                "weight": 0.5,
                "params": {"miner": "semi_hard"} if name == "triplet" else {},
            }
            for name in available("objective")
        ],
    }
    for run, objectives in runs.items():
        config = tiny_config(batch_size=256, max_steps=2, log_every=1)
        config.data.val_split = None
        raw = config.to_dict() | {"objectives": objectives}
        path = tmp_path / f"{run}.yaml"
        path.write_text(yaml.safe_dump(raw))
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CLI,
                "train",
                str(path),
                "--data",
                str(digits_manifest),
                "--out",
                str(tmp_path / run),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()]
        assert [r["step"] for r in records] == [1, 2]
        losses = {k for k in records[0] if k.endswith("_loss")}
        assert losses == {f"{o['name']}_loss" for o in objectives}
        assert all(np.isfinite(r["loss"]) for r in records)

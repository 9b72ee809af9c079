"""Part names in docs/, README.md and configs/ resolve in a fresh process that imported the CLI."""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from jointspace.parts import BUILTIN_PARTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
MODALITIES = ("text", "image", "audio")


def names_in_yaml(node, found, context=None):
    """(kind, name) pairs in a parsed config or config fragment."""
    if isinstance(node, list):
        for item in node:
            names_in_yaml(item, found, context)
    elif isinstance(node, dict):
        if isinstance(node.get("name"), str) and context in ("encoder", "objective"):
            found.add((context, node["name"]))
        params = node.get("params")
        if context == "objective" and isinstance(params, dict) and "miner" in params:
            found.add(("miner", params["miner"]))
        for key, value in node.items():
            if key in ("objectives", "objective"):
                names_in_yaml(value, found, "objective")
            elif key in MODALITIES or key == "towers":
                names_in_yaml(value, found, "encoder")
            elif key == "manifest" and isinstance(value, str):
                names_in_text(value, found)
            elif key != "params":
                names_in_yaml(value, found, context)


def names_in_text(text, found):
    """(kind, name) pairs in prose and commands; UPPER-case words are placeholders."""
    for name in re.findall(r"builtin:([a-z][\w-]*)", text):
        found.add(("dataset", name))
    for name in re.findall(r"data build ([a-z][\w-]*)", text):
        found.add(("dataset", name))
    for name in re.findall(r"(?:--dataset |build_dataset\(\")([a-z][\w-]*)", text):
        found.add(("dataset", name))
    for names in re.findall(r"--datasets ([\w,-]+)", text):
        found.update(("dataset", n) for n in names.split(",") if n)
    for name in re.findall(r"--format ([a-z]\w*)", text):
        found.add(("format", name))
    for scheme in re.findall(r"\b([a-z]+)://", text):
        if scheme not in ("http", "https", "sqlite"):  # sqlite: MLflow's store, not an index
            found.add(("index", scheme))
    for kind in re.findall(r"[?&]kind=([a-z]+)", text):
        found.add(("faiss-kind", kind))
    for names in re.findall(r"--objectives[ =]([\w,-]+)", text):
        found.update(("compare", n) for n in names.split(",") if n)
    for names in re.findall(r"miner: ([\w |\n]+)", text):
        found.update(("miner", n.strip()) for n in names.split("|") if n.strip())
    # docs/training.md: "Registered: `clip`, `siglip`, `triplet` (…), `dcca`."
    for sentence in re.findall(r"Registered: (.*?)\.\s", text, flags=re.S):
        found.update(("objective", n) for n in re.findall(r"`([a-z]\w*)`", sentence))
    # Inline config fragments: `objectives: [{name: siglip, …}]`, `name: hf_text`.
    for span in re.findall(r"`([^`\n]*name: [^`\n]*)`", text):
        kind = "objective" if span.lstrip().startswith("objective") else "encoder"
        for name in re.findall(r"name: ([a-z]\w*)", span):
            found.add((kind, name))


def parts_table(text):
    """The rows of docs/training.md's "Parts by name" table: {kind: [names]}."""
    table = {}
    for kind, names in re.findall(r"^\| (\w+) \| (`[^|]*`) \|", text, flags=re.M):
        if kind in BUILTIN_PARTS:
            table[kind] = re.findall(r"`([^`]+)`", names)
    return table


def used_names():
    found = set()
    for path in CONFIGS:
        names_in_yaml(yaml.safe_load(path.read_text()), found)
    for path in DOCS:
        text = path.read_text()
        names_in_text(text, found)
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
            names_in_yaml(yaml.safe_load(block), found)
    return found


def test_the_parts_table_in_the_docs_is_the_registry():
    table = parts_table((ROOT / "docs" / "training.md").read_text())
    assert {k: sorted(v) for k, v in table.items()} == {
        k: sorted(v) for k, v in BUILTIN_PARTS.items()
    }


def test_the_name_finder_sees_each_kind():
    found = used_names()
    kinds = {kind for kind, _ in found}
    assert {"encoder", "objective", "miner", "dataset", "format", "index", "compare"} <= kinds
    # The cases that went missing or are easy to miss: dcca (issue 14) and the miners' list.
    assert {("compare", "dcca"), ("objective", "dcca"), ("miner", "semi_hard")} <= found
    assert ("encoder", "efficientnet_lite0") in found and ("dataset", "emoji-pairs") in found


def test_every_documented_name_resolves_after_importing_only_the_cli():
    names = sorted(used_names())
    table = parts_table((ROOT / "docs" / "training.md").read_text())
    names += sorted((kind, name) for kind, listed in table.items() for name in listed)
    script = """
import json, sys
import jointspace.cli
from jointspace.registry import lookup, UnknownPartError
names = json.loads(sys.argv[1])
missing = []
for kind, name in names:
    try:
        if kind == "compare":
            from jointspace.runs.compare import CLOSED_FORM, objectives_for
            if name not in CLOSED_FORM:
                objectives_for(name)
        elif kind == "faiss-kind":
            from jointspace.index.faiss_files import KINDS
            assert name in KINDS, name
        else:
            assert callable(lookup(kind, name))
    except (UnknownPartError, KeyError, AssertionError) as err:
        missing.append(f"{kind} {name}: {err}")
print(json.dumps(missing))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

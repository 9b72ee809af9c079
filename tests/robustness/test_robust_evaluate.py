"""Bad inputs to evaluation: each ends in one user error (JointspaceError / `error:` + exit 1)."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from jointspace.cli import app
from jointspace.config import ModelConfig, TowerConfig
from jointspace.data import read_manifest
from jointspace.errors import JointspaceError
from jointspace.evaluate.chance import chance_levels
from jointspace.evaluate.class_names import class_names
from jointspace.evaluate.metrics import chance_metrics, retrieval_metrics
from jointspace.evaluate.probe import linear_probe_cv
from jointspace.evaluate.retrieval import evaluate_retrieval, relevance_matrix
from jointspace.evaluate.zeroshot import class_embeddings, evaluate_zero_shot, zero_shot_scores
from jointspace.models.build import build_model

LABELS = ["shapes/stars", "shapes/circles"]
EYE = np.eye(3, dtype=bool)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    towers = {
        "text": TowerConfig("transformer", dict(width=16, depth=1, heads=2)),
        "image": TowerConfig("cnn", dict(image_size=8, widths=[8])),
    }
    return build_model(ModelConfig(embed_dim=8, towers=towers), corpus=["a star"]).eval()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("m")
    rows = []
    for i in range(6):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / f"{i}.png")
        rows.append(f"{i},{i}.png,item {i},{LABELS[i % 2]},test")
    (root / "m.csv").write_text("id,image,text,label,split\n" + "\n".join(rows) + "\n")
    return root / "m.csv"


def nan_scores():
    s = np.eye(3)
    s[1, 2] = np.nan
    return s


MATRICES = {
    "nan score": lambda: retrieval_metrics(nan_scores(), EYE),
    "inf score": lambda: retrieval_metrics(np.where(EYE, np.inf, 0.0), EYE),
    "-inf score": lambda: retrieval_metrics(np.where(EYE, -np.inf, 0.0), EYE),
    "nothing relevant": lambda: retrieval_metrics(np.eye(3), np.zeros((3, 3), bool)),
    "no queries": lambda: retrieval_metrics(np.zeros((0, 3)), np.zeros((0, 3), bool)),
    "no gallery": lambda: retrieval_metrics(np.zeros((3, 0)), np.zeros((3, 0), bool)),
    "1-D relevance": lambda: chance_metrics(np.ones(3, bool)),
    "chance, nothing relevant": lambda: chance_metrics(np.zeros((2, 4), bool)),
    "chance, empty": lambda: chance_metrics(np.zeros((0, 0), bool)),
    "zero-shot nan": lambda: zero_shot_scores(np.full((2, 2), np.nan), np.array([0, 1]), "ab"),
    "zero-shot no items": lambda: zero_shot_scores(np.zeros((0, 2)), np.array([], int), "ab"),
    "probe one class": lambda: linear_probe_cv(np.eye(4), np.zeros(4), np.eye(4), np.zeros(4)),
    "probe singleton class": lambda: linear_probe_cv(
        np.eye(5), np.array([0, 0, 0, 0, 1]), np.eye(5), np.zeros(5)
    ),
}


@pytest.mark.parametrize("case", list(MATRICES))
def test_bad_matrices_are_user_errors(case):
    with pytest.raises(JointspaceError) as error:
        MATRICES[case]()
    assert "\n" not in str(error.value) and "array(" not in str(error.value)


NAME_FILES = {
    "yaml list": "- star\n- circle\n",
    "broken yaml": "shapes/stars: [unclosed\n",
    "number values": "shapes/stars: 1\nshapes/circles: 2\n",
    "missing a label": "shapes/stars: star\n",
    "empty name": "shapes/stars: star\nshapes/circles: '  '\n",
    "empty file": "",
    "json string": '"stars"',
}


@pytest.mark.parametrize("case", list(NAME_FILES))
def test_bad_class_name_files_are_user_errors(case, tmp_path):
    path = tmp_path / "names.yaml"
    path.write_text(NAME_FILES[case])
    with pytest.raises(JointspaceError, match=str(path).replace("\\", "\\\\")[:20]):
        class_names(LABELS, path)


@pytest.mark.parametrize(
    "names", ["Leaf", "no/such/file.yaml", b"\xff\xfe".decode("latin-1"), ""], ids=repr
)
def test_unknown_namings_are_user_errors(names):
    with pytest.raises(JointspaceError, match="not a file, nor one of leaf, path"):
        class_names(LABELS, names)


def test_binary_class_name_file_is_a_user_error(tmp_path):
    (tmp_path / "n.bin").write_bytes(b"\x00\xff\x89PNG\r\n")
    with pytest.raises(JointspaceError):
        class_names(LABELS, tmp_path / "n.bin")


@pytest.mark.parametrize("templates", [(), ("no slot",), ("{}", "missing")], ids=repr)
def test_templates_without_a_slot_are_user_errors(model, templates):
    with pytest.raises(JointspaceError, match="must each contain"):
        class_embeddings(model, ["a"], templates)


def test_unknown_relevance_is_a_user_error(manifest):
    with pytest.raises(JointspaceError, match="relevance must be one of pairs, label"):
        relevance_matrix(read_manifest(manifest), "text", "image", "labels")


def test_nan_weights_are_a_user_error_not_zero_recall(model, manifest):
    broken = build_model(model.config, corpus=["a star"]).eval()
    with torch.no_grad():
        for p in broken.tower("image").head.parameters():
            p.fill_(float("nan"))
    with pytest.raises(JointspaceError, match=r"6 of 6 image embeddings are NaN"):
        evaluate_retrieval(broken, read_manifest(manifest))
    with pytest.raises(JointspaceError, match="image embeddings are NaN"):
        evaluate_zero_shot(broken, read_manifest(manifest))


def cli_run(tmp_path, model, manifest, nan=False):
    run = tmp_path / "model"
    if nan:
        model = build_model(model.config, corpus=["a star"]).eval()
        with torch.no_grad():
            for p in model.tower("text").head.parameters():
                p.fill_(float("nan"))
    model.save(str(run))
    return run


CLI = {
    "eval, unknown split": (["eval", "{run}", "--data", "{m}", "--split", "tset"], False),
    "eval, unknown relevance": (["eval", "{run}", "--data", "{m}", "--relevance", "x"], False),
    "eval, nan weights": (["eval", "{run}", "--data", "{m}"], True),
    "zeroshot, template without slot": (
        ["zeroshot", "{run}", "--data", "{m}", "--split", "test", "--template", "x"],
        False,
    ),
    "zeroshot, nan weights": (["zeroshot", "{run}", "--data", "{m}", "--split", "test"], True),
}


@pytest.mark.parametrize("case", list(CLI))
def test_bad_evaluation_commands_print_one_error_line(case, tmp_path, model, manifest):
    args, nan = CLI[case]
    run = cli_run(tmp_path, model, manifest, nan)
    args = [a.format(run=run, m=manifest) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_chance_levels_refuse_queries_without_relevant_items():
    with pytest.raises(ValueError, match="each with a relevant item"):
        chance_levels(np.array([[True, False], [False, False]]))

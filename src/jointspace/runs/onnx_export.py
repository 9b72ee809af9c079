"""``jointspace export RUN --to onnx DIR``: every tower as an ONNX graph that onnxruntime runs.

DIR holds ``<modality>.onnx`` (raw collated input → L2-normalised embedding), the text tower's
``tokenizer.json`` and ``onnx.json`` (inputs, preprocessing, parity). Each graph is checked
against its PyTorch tower before anything is written; below ``PARITY_FLOOR`` nothing is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from jointspace.atomic import atomic_dir
from jointspace.config import dumps_json
from jointspace.encoders.base import Tower
from jointspace.encoders.hf_preprocess import HFImageProcessor
from jointspace.encoders.onnx import (
    EXAMPLE_TEXTS,
    INPUT_NAMES,
    OPSET,
    OUTPUT_NAME,
    OnnxSession,
    TowerGraph,
    export_tower,
    image_size,
    max_length,
)
from jointspace.errors import JointspaceError
from jointspace.models.inference import row_cosines
from jointspace.models.modes import evaluating
from jointspace.runs.outputs import claim_dir, mark_dir
from jointspace.runs.run import Run

COMMAND = "export"
SPEC_FILE = "onnx.json"
TOKENIZER_FILE = "tokenizer.json"
# Least cosine of any parity input between the ONNX graph and the PyTorch tower: the same
# float32 arithmetic, fused and reordered by onnxruntime (measured ≥ 0.999999 on every tower).
PARITY_FLOOR = 0.9999
PARITY_TEXTS = (
    *EXAMPLE_TEXTS,
    "x",
    "the handwritten digit seven, slightly slanted, written with a thick black pen on paper",
    "un chat noir dort sur le canapé",
    "🙂 emoji and numbers 12345",
)


class ParityError(JointspaceError):
    """An exported graph does not reproduce its tower closely enough to be used in its place."""


def export_onnx(run: Run, out_dir: Path, *, force: bool = False) -> dict[str, Any]:
    """Write the run's towers to ``out_dir`` as ONNX (``force``: replace an earlier export)."""
    model = run.model
    for modality in model.modalities:
        if model.tower(modality).params.get("crop") == "windows":
            # The graph embeds one window; the tower pools features over windows before its head.
            raise JointspaceError(
                f"export: the {modality} tower pools over windows (crop: windows), which one "
                "ONNX graph of one window cannot reproduce; nothing was written"
            )
    claim_dir(out_dir, COMMAND, force)
    towers: dict[str, Any] = {}
    with atomic_dir(out_dir) as tmp, evaluating(model):
        for modality in model.modalities:
            tower = model.tower(modality).cpu()
            graph = export_tower(tower, normalize=True)
            (tmp / f"{modality}.onnx").write_bytes(graph.model)
            parity = check_parity(tower, graph)
            towers[modality] = describe(tower, graph) | {"parity": parity}
            if modality == "text":
                tokenizer: Any = tower.tokenizer  # every text tower holds a tokenizers.Tokenizer
                tokenizer.save(str(tmp / TOKENIZER_FILE))
        spec = {
            "format": 1,
            "opset": OPSET,
            "model_fingerprint": run.fingerprint,
            "embed_dim": model.config.embed_dim,
            "towers": towers,
        }
        (tmp / SPEC_FILE).write_text(dumps_json(spec))
    mark_dir(out_dir, COMMAND)
    return spec


def parity_inputs(tower: Tower) -> list[torch.Tensor]:
    """Batches of several sizes (and text lengths) that the graph must reproduce."""
    generator = torch.Generator().manual_seed(1)
    if tower.modality == "text":
        texts = [tower.preprocess(t) for t in PARITY_TEXTS]
        return [tower.collate(texts), tower.collate(texts[2:3])]
    if tower.modality == "image":
        size = image_size(tower)
        return [torch.rand(n, 3, *size, generator=generator) * 2 - 1 for n in (1, 3)]
    samples = round(tower.params["sample_rate"] * tower.params["seconds"])
    return [torch.randn(n, samples, generator=generator) * 0.1 for n in (1, 3)]


def check_parity(tower: Tower, graph: TowerGraph) -> dict[str, Any]:
    """The worst cosine between graph and tower over ``parity_inputs``; refuse below the floor."""
    session = OnnxSession(graph)
    worst, count = 1.0, 0
    for batch in parity_inputs(tower):
        with torch.inference_mode():
            expected = F.normalize(tower(batch).float(), dim=-1)
        worst = min(worst, float(row_cosines(expected, session(batch)).min()))
        count += len(batch)
    subject = f"the {tower.modality} tower's ONNX graph disagrees with PyTorch"
    return parity_record(worst, count, floor=PARITY_FLOOR, subject=subject)


def parity_record(
    worst: float, count: int, *, floor: float, subject: str, inputs: str = "inputs", digits: int = 6
) -> dict[str, Any]:
    """An export's parity check as recorded; below ``floor`` (or NaN) a ParityError."""
    if not worst >= floor:  # NaN fails too
        raise ParityError(
            f"export: {subject} (worst cosine {worst:.{digits}f} < {floor} over {count} "
            f"{inputs}); nothing was written"
        )
    return {"min_cosine": round(worst, 7), "floor": floor, "inputs": count}


def describe(tower: Tower, graph: TowerGraph) -> dict[str, Any]:
    """How to feed the graph: file, input and output, and the preprocessing before it."""
    if tower.modality == "text":
        shape: list[Any] = ["batch", graph.length or "length"]
        dtype = "int64"
        pre: dict[str, Any] = {
            "tokenizer": TOKENIZER_FILE,
            "max_length": max_length(tower),
            "pad_id": graph.pad_id,
            "padding": "right, to the longest text in the batch"
            if graph.length is None
            else f"right, to exactly {graph.length} tokens (the graph's fixed length)",
            "steps": "tokenizers.Tokenizer.from_file(tokenizer.json).encode_batch(texts): its "
            "normaliser, [CLS] … [SEP] template and truncation are in the file; ids → input_ids",
        }
    elif tower.modality == "image":
        height, width = image_size(tower)
        shape, dtype = ["batch", 3, height, width], "float32"
        transform: Any = tower.transform  # an ImageTransform or an HFImageProcessor
        if isinstance(transform, HFImageProcessor):
            pre = {
                "image_size": [height, width],
                "steps": "the checkpoint's preprocessor_config.json (the Hugging Face image "
                "processor): RGB, resize, centre-crop, rescale, normalise, channels first",
                **transform.describe(),
            }
        else:
            pre = {
                "image_size": height,
                "steps": "RGB; resize the shorter side to image_size (bicubic), centre-crop to "
                "image_size × image_size, scale to [0, 1], subtract mean and divide by std per "
                "channel, channels first",
                "mean": list(transform.mean),
                "std": list(transform.std),
            }
    else:
        samples = round(tower.params["sample_rate"] * tower.params["seconds"])
        shape, dtype = ["batch", samples], "float32"
        pre = {
            "sample_rate": tower.params["sample_rate"],
            "seconds": tower.params["seconds"],
            "crop": tower.params.get("crop", "center"),
            "steps": "mono, resampled to sample_rate, cut to seconds where crop says (center: "
            "the middle; start: the beginning; onset: from the first 10 ms frame within 20 dB of "
            "the loudest; energy: the window holding the most energy) or zero-padded to seconds",
        }
    return {
        "file": f"{tower.modality}.onnx",
        "tower": type(tower).__name__,
        "input": {"name": INPUT_NAMES[tower.modality], "dtype": dtype, "shape": shape},
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", tower.embed_dim],
            "normalized": True,
        },
        "preprocessing": pre,
    }

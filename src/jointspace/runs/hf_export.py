"""``jointspace export RUN --to hf DIR``: a run on a CLIP/SigLIP checkpoint back in its own format.

DIR is what ``CLIPModel.from_pretrained`` (``SiglipModel``) loads: config.json, the fine-tuned
model.safetensors (logit scale and bias included), the tokenizer and the image preprocessing
files. The reloaded model's features are checked against the run's towers before anything is
written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jointspace.atomic import atomic_dir
from jointspace.encoders.hf_clip import PAD, HFClipImage, HFClipText
from jointspace.encoders.hf_files import transformers_module, write_files
from jointspace.errors import JointspaceError
from jointspace.models.joint import JointModel
from jointspace.models.modes import evaluating
from jointspace.runs.outputs import claim_dir, mark_dir
from jointspace.runs.run import Run

COMMAND = "export"
# Largest difference of any feature between the written checkpoint and the run's towers: the
# same modules and arithmetic (measured 0 on the test checkpoints).
PARITY_ATOL = 1e-4
PARITY_TEXTS = ("a photo of a cat", "x", "the handwritten digit seven on paper", "")


class HFExportError(JointspaceError):
    """The run cannot be written as a Hugging Face checkpoint (other towers, or no parity)."""


def export_hf(run: Run, out_dir: Path, *, force: bool = False) -> Path:
    """Write the run's CLIP/SigLIP towers to ``out_dir`` (``force``: replace an earlier export)."""
    out_dir = Path(out_dir)
    model = run.model.cpu()
    text, image = check_towers(model)
    claim_dir(out_dir, COMMAND, force)
    with evaluating(model):
        hf = to_hf_model(model, text, image)
        with atomic_dir(out_dir) as tmp:
            hf.save_pretrained(tmp)
            write_files(tmp, text.files | image.files)
            check_parity(tmp, text, image)
    mark_dir(out_dir, COMMAND)
    return out_dir


def check_towers(model: JointModel) -> tuple[HFClipText, HFClipImage]:
    """The run's two HF CLIP/SigLIP towers, or one line saying why there are none."""
    towers = dict(model.towers)  # ModuleDict has no .get
    text, image = towers.get("text"), towers.get("image")
    if not isinstance(text, HFClipText) or not isinstance(image, HFClipImage):
        names = {m: type(t).__name__ for m, t in model.towers.items()}
        raise HFExportError(
            f"export --to hf needs the towers hf_clip_text and hf_clip_image (a run from "
            f"model.pretrained); this run has {names}: use --to onnx or --to sentence-transformers"
        )
    if text.kind != image.kind or _vision(text.hf_config) != _vision(image.hf_config):
        raise HFExportError(
            "export --to hf: the text and image towers come from different checkpoints, so "
            "there is no one model to write"
        )
    return text, image


def _vision(config: Any) -> dict:
    return config.vision_config.to_dict()


def to_hf_model(model: JointModel, text: HFClipText, image: HFClipImage) -> Any:
    """A ``CLIPModel``/``SiglipModel`` holding the run's weights, logit scale and bias."""
    transformers = transformers_module()
    hf = transformers.AutoModel.from_config(text.hf_config)
    state: dict[str, torch.Tensor] = {}
    state |= {f"text_model.{k}": v for k, v in text.text_model.state_dict().items()}
    state |= {f"vision_model.{k}": v for k, v in image.vision_model.state_dict().items()}
    text_head = "text_model.head" if text.kind == "siglip" else "text_projection"
    state |= {f"{text_head}.{k}": v for k, v in text.head.state_dict().items()}
    state |= {f"visual_projection.{k}": v for k, v in image.head.state_dict().items()}
    own = hf.state_dict()
    state["logit_scale"] = model.logit_scale.detach().reshape(own["logit_scale"].shape)
    if "logit_bias" in own:
        if model.logit_bias is None:
            raise HFExportError("export --to hf: this SigLIP run has no logit bias to write")
        state["logit_bias"] = model.logit_bias.detach().reshape(own["logit_bias"].shape)
    result = hf.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        name = (result.missing_keys or result.unexpected_keys)[0]
        raise HFExportError(f"export --to hf: the run's weights do not fit the checkpoint: {name}")
    return hf.eval()


def check_parity(directory: Path, text: HFClipText, image: HFClipImage) -> None:
    """Reload ``directory`` with transformers and compare its features with the towers'."""
    transformers = transformers_module()
    hf = transformers.AutoModel.from_pretrained(directory, local_files_only=True).eval()
    ids = text.collate(list(PARITY_TEXTS))
    mask = ids != PAD
    inputs: dict[str, torch.Tensor] = {"input_ids": torch.where(mask, ids, text.pad_value)}
    if text.kind != "siglip":
        inputs["attention_mask"] = mask.long()
    height, width = image.transform.size
    pixels = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        pairs = [
            (_features(hf.get_text_features(**inputs)), text(ids)),
            (_features(hf.get_image_features(pixel_values=pixels)), image(pixels)),
        ]
    worst = max(float((a - b).abs().max()) for a, b in pairs)
    if not worst <= PARITY_ATOL:  # NaN fails too
        raise HFExportError(
            f"export --to hf: the written checkpoint's features differ from the run's by "
            f"{worst:.2e} (> {PARITY_ATOL}); nothing was written"
        )


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output

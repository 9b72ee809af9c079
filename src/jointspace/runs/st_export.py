"""``jointspace export RUN --to sentence-transformers DIR``: the text tower as an ST model.

Only the ``hf_text`` tower (a Hugging Face encoder, mean/CLS pooling, a projection head) maps onto
standard modules — Transformer → Pooling → Dense(s) → Normalize — so DIR loads with
``SentenceTransformer(DIR)`` without jointspace or ``trust_remote_code``. Other text towers are
refused (``--to onnx`` exports them); image and audio towers are skipped and listed in
``jointspace_export.json``. DIR is reloaded and checked against the tower before it is in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from jointspace.atomic import atomic_dir
from jointspace.config import dumps_json
from jointspace.encoders.base import Tower
from jointspace.encoders.pretrained_text import PretrainedText
from jointspace.errors import InputError, MissingPackageError
from jointspace.models.inference import row_cosines, text_pad_id
from jointspace.models.modes import evaluating
from jointspace.runs.onnx_export import PARITY_TEXTS, parity_record
from jointspace.runs.outputs import claim_dir, mark_dir
from jointspace.runs.run import Run

COMMAND = "export"
RECORD_FILE = "jointspace_export.json"
# Least cosine between SentenceTransformer(DIR).encode and the jointspace tower on PARITY_TEXTS:
# the same float32 modules on the same token ids (measured ≥ 0.9999999; 1e-5 leaves room for
# another attention kernel).
PARITY_FLOOR = 0.99999
ONNX_HINT = "`jointspace export RUN --to onnx DIR` exports every tower for onnxruntime"
HF_HINT = "; `jointspace export RUN --to hf DIR` writes CLIP/SigLIP towers as a Hugging Face model"


class UnsupportedTowerError(InputError):
    """A tower that sentence-transformers' standard modules cannot express."""


def export_sentence_transformers(run: Run, out_dir: Path, *, force: bool = False) -> Path:
    """Write the run's text tower to ``out_dir`` as a SentenceTransformer directory.

    ``force`` replaces an earlier ``jointspace export`` output; nothing else is ever replaced.
    """
    model = run.model
    tower = text_tower(run)
    sentence_transformer, st = sentence_transformers()
    claim_dir(out_dir, COMMAND, force)
    with atomic_dir(out_dir) as tmp, evaluating(model):
        tower = tower.cpu()
        backbone: Any = tower.backbone  # a transformers PreTrainedModel
        stage = tmp / ".backbone"  # the Transformer module loads from files; written again below
        save_backbone(tower, stage)
        modules = [
            st.Transformer(str(stage), max_seq_length=tower.params["max_len"]),
            st.Pooling(backbone.config.hidden_size, pooling_mode=tower.pooling),
            *dense_modules(tower.head, st.Dense),
            st.Normalize(),
        ]
        sentence_transformer(modules=modules, device="cpu").save(str(tmp), create_model_card=False)
        shutil.rmtree(stage)
        record: dict[str, Any] = {
            "format": 1,
            "model_fingerprint": run.fingerprint,
            "towers": {"text": {"encoder": encoder_name(run, "text"), "files": "."}},
            "skipped": skipped_towers(run),
        }
        record["towers"]["text"]["parity"] = check_parity(tower, tmp)
        (tmp / RECORD_FILE).write_text(dumps_json(record))
        (tmp / "README.md").write_text(model_card(record))
        readable_like(tmp / "README.md", tmp)
    mark_dir(out_dir, COMMAND)
    return out_dir


def sentence_transformers() -> tuple[Any, Any]:
    """``SentenceTransformer`` and its modules' namespace, offline; or how to install them."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory never needs the hub
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise MissingPackageError(
            "--to sentence-transformers needs `pip install sentence-transformers`"
        ) from err
    from sentence_transformers.sentence_transformer import modules  # 6.x's home of the modules

    return SentenceTransformer, modules


def encoder_name(run: Run, modality: str) -> str:
    """The encoder name the run's config gives ``modality``'s tower (e.g. ``hf_text``)."""
    return run.model.config.towers[modality].name


def text_tower(run: Run) -> PretrainedText:
    """The run's text tower if standard sentence-transformers modules can express it."""
    model = run.model
    if "text" not in model.modalities:
        raise UnsupportedTowerError(
            f"--to sentence-transformers exports a text tower; {run.model_dir} has none "
            f"(towers: {', '.join(model.modalities)}): {ONNX_HINT}"
        )
    tower, name = model.tower("text"), encoder_name(run, "text")
    if not isinstance(tower, PretrainedText):
        # Scratch towers are jointspace code: sentence-transformers 6 would import it only with
        # trust_remote_code=True and jointspace installed, which defeats the point of exporting.
        hf = HF_HINT if name.startswith("hf_clip") else ""
        raise UnsupportedTowerError(
            f"--to sentence-transformers: the text tower {name!r} cannot be expressed with "
            "sentence-transformers' standard modules (only 'hf_text' towers can: a Hugging Face "
            f"encoder, pooling and a projection head); {ONNX_HINT}{hf}"
        )
    return tower


def skipped_towers(run: Run) -> dict[str, str]:
    """Every tower besides the text one, with why the directory leaves it out."""
    return {
        modality: f"sentence-transformers has no module for jointspace's "
        f"{encoder_name(run, modality)!r} {modality} tower; {ONNX_HINT}"
        for modality in run.model.modalities
        if modality != "text"
    }


def save_backbone(tower: PretrainedText, directory: Path) -> None:
    """The Hugging Face backbone and its tokenizer as ``AutoModel``/``AutoTokenizer`` load them."""
    from transformers import PreTrainedTokenizerFast

    backbone: Any = tower.backbone  # a transformers PreTrainedModel
    backbone.save_pretrained(directory)
    # A copy: the wrapper may change the tower's own tokenizer's padding and truncation.
    tokenizer = Tokenizer.from_str(tower.tokenizer.to_str())
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=tokenizer.id_to_token(text_pad_id(tower) or 0),
        model_max_length=tower.params["max_len"],
    ).save_pretrained(directory)


def dense_modules(head: nn.Module, dense: Any) -> list[Any]:
    """The projection head as sentence-transformers ``Dense`` modules holding its weights.

    A linear/affine head is one Dense without activation; an MLP head is Linear → GELU → Linear,
    two Denses with GELU then none (Dense's own default, Tanh, is never left in place).
    """
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Linear):
            continue
        after = layers[i + 1] if i + 1 < len(layers) else None
        activation = after if isinstance(after, nn.GELU | nn.ReLU | nn.Tanh) else nn.Identity()
        module = dense(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            activation_function=activation,
        )
        module.linear.load_state_dict(layer.state_dict())
        out.append(module)
    expressed = sum(isinstance(m, nn.Linear | nn.GELU | nn.ReLU | nn.Tanh) for m in layers)
    if not out or expressed != len(layers):
        raise UnsupportedTowerError(
            f"--to sentence-transformers: projection head {head} has layers that Dense modules "
            f"cannot express. {ONNX_HINT}"
        )
    return out


def check_parity(tower: Tower, directory: Path) -> dict[str, Any]:
    """Reload ``directory`` and compare it with ``tower``; refuse below ``PARITY_FLOOR``."""
    reloaded = sentence_transformers()[0](str(directory), device="cpu")
    worst, count = 1.0, 0
    for texts in (list(PARITY_TEXTS), list(PARITY_TEXTS[2:3])):
        with torch.inference_mode():
            expected = F.normalize(tower(tower.collate(texts)).float(), dim=-1)
        got = torch.as_tensor(reloaded.encode(texts, batch_size=len(texts)))
        worst = min(worst, float(row_cosines(expected, got).min()))
        count += len(texts)
    subject = "the SentenceTransformer disagrees with the jointspace text tower"
    return parity_record(
        worst, count, floor=PARITY_FLOOR, subject=subject, inputs="texts", digits=7
    )


def readable_like(reference: Path, directory: Path) -> None:
    """Give every file in ``directory`` the mode of ``reference`` (one we wrote under the umask).

    transformers writes model.safetensors 0600; an export is meant for other users and tools.
    """
    mode = reference.stat().st_mode & 0o777
    for path in directory.rglob("*"):
        if path.is_file() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


def model_card(record: dict[str, Any]) -> str:
    """A short README: where the directory came from, how to load it, what it leaves out."""
    parity = record["towers"]["text"]["parity"]
    lines = [
        "# jointspace text tower for sentence-transformers",
        "",
        f"Exported by `jointspace export RUN --to sentence-transformers DIR` from the jointspace "
        f"model {record['model_fingerprint']}.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "vectors = SentenceTransformer(DIR).encode(texts)  # L2-normalised, as jointspace's",
        "```",
        "",
        f"Parity with jointspace: cosine ≥ {parity['min_cosine']} on {parity['inputs']} texts.",
    ]
    lines += [f"Not included: {m} — {why}" for m, why in record["skipped"].items()]
    return "\n".join(lines) + "\n"

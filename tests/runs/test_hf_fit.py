"""Training from a CLIP checkpoint: LiT with layer decay resumes exactly from slim checkpoints."""

import torch

from jointspace.config import ExperimentConfig
from jointspace.models import load
from jointspace.runs.fit import fit
from jointspace.train import checkpoint as ckpt


def lit_config(directory, steps):
    return ExperimentConfig.from_dict(
        {
            "data": {"manifest": "builtin:digits", "augment": False, "val_split": None},
            "model": {
                "pretrained": str(directory),
                "towers": {"image": {"name": "hf_clip_image", "lock": True}},
            },
            "train": {
                "batch_size": 32,
                "max_steps": steps,
                "lr": 1e-3,
                "warmup_steps": 1,
                "layer_decay": 0.5,
                "checkpoint_every": 2,
                "progress": False,
            },
        }
    )


def test_a_lit_run_with_layer_decay_resumes_to_the_same_weights(hf_clip_dirs, tmp_path):
    clip = hf_clip_dirs["clip"]
    fit(lit_config(clip, 4), tmp_path / "straight")
    fit(lit_config(clip, 2), tmp_path / "resumed")
    latest = ckpt.latest_checkpoint(tmp_path / "resumed" / "checkpoints")
    frozen = (latest / "frozen.json").read_text()
    assert '"image"' in frozen  # the locked tower is referenced, not stored
    fit(lit_config(clip, 4), tmp_path / "resumed", resume=True)
    straight, resumed = load(tmp_path / "straight"), load(tmp_path / "resumed")
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    source = load(clip)
    assert not torch.equal(straight.tower("text").head.weight, source.tower("text").head.weight)
    assert torch.equal(
        straight.tower("image").vision_model.embeddings.patch_embedding.weight,
        source.tower("image").vision_model.embeddings.patch_embedding.weight,
    )

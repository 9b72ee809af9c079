"""Writes ``legacy_siglip_run/``: a SigLIP run stopped at step 2 of 4 by jointspace before issue 14.

Run it with an older checkout first on the path (``PYTHONPATH=OLD/src python THIS OUT``): there
SigLIP's scale and bias lived in the objective, so the checkpoint is in the old layout.
"""

import contextlib
import shutil
import sys
from pathlib import Path

from jointspace.config import ExperimentConfig, ObjectiveConfig, builtin_config
from jointspace.data import build_dataset
from jointspace.runs.fit import fit


class Stop(Exception):
    pass


def stop_at_2(step, record):
    if step == 2:
        raise Stop()


def main(out: Path) -> None:
    config = ExperimentConfig.from_yaml(builtin_config("digits"))
    config.model.embed_dim = 8
    config.model.towers["text"].params = dict(
        width=8, depth=1, heads=2, max_len=8, vocab_size=80, dropout=0.1
    )
    config.model.towers["image"].params = dict(image_size=8, widths=[8, 16])
    config.objectives = [ObjectiveConfig("siglip")]
    config.data.val_split = None
    config.train.batch_size, config.train.max_steps = 256, 4
    config.train.warmup_steps, config.train.checkpoint_every = 1, 100
    config.train.progress, config.train.log_every = False, 1
    config.train.feature_cache = None
    manifest = build_dataset("digits", root=out.parent / "cache")
    with contextlib.suppress(Stop):
        fit(config, out, manifest=manifest, callbacks=[stop_at_2])
    (out / "metrics.csv").unlink(missing_ok=True)
    shutil.rmtree(out.parent / "cache")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

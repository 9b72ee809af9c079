"""Run by tests under torchrun: ``jointspace train`` for a config, with rank 0 stopping for good
after step N (its checkpoint written), so a test can kill -9 the job at a known point.

    torchrun --nproc-per-node 2 --standalone torchrun_pause.py CONFIG OUT STEP MARKER

Each rank writes its pid to ``MARKER.pidR`` (torchrun starts workers in sessions of their own,
so killing the launcher's process group leaves them running); rank 0 writes MARKER at step N.
"""

import os
import sys
import time
from pathlib import Path

from jointspace.config import ExperimentConfig
from jointspace.runs.fit import fit
from jointspace.train.distributed import launched


def main(config_path: str, out: str, at: str, marker: str) -> None:
    config = ExperimentConfig.from_yaml(config_path)

    def pause(step: int, record: dict) -> None:
        if step == int(at):
            Path(marker).write_text(str(step))
            time.sleep(600)  # the other rank waits in its next step's collective

    with launched(config.train.device) as world:
        Path(f"{marker}.pid{world.rank}").write_text(str(os.getpid()))
        fit(config, out, world=world, callbacks=[pause] if world.is_main else [])


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Training progress is visible when stderr is a file or pipe, and can be silenced."""

import logging
import re

from conftest import tiny_config
from jointspace import fit


def short_config(**train):
    config = tiny_config(batch_size=256, max_steps=6, log_every=2, eval_every=3, **train)
    config.train.progress = train.get("progress", True)
    return config


def test_lines_per_steps_epoch_and_evaluation_when_stderr_is_not_a_terminal(
    tmp_path, digits_manifest, capfd
):
    fit(short_config(), tmp_path / "run", manifest=digits_manifest)
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert [line.split("  ")[0] for line in lines if line.startswith("train step")] == [
        "train step 2/6",
        "train step 4/6",
        "train step 6/6",
    ]
    assert sum(line.startswith("eval at step") for line in lines) == 2  # steps 3 and 6
    assert any(line.startswith("epoch 1/1 done: step 6/6, mean loss") for line in lines)
    assert "\r" not in err  # no bar redraws in a log file


# gRPC's C core (a Milvus client left by an earlier test) may log keepalive notes on fd 2.
GRPC_CORE_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\]")


def own_output(err: str) -> list[str]:
    """Lines on stderr that did not come from gRPC's C core."""
    return [line for line in err.splitlines() if not GRPC_CORE_LINE.match(line)]


def test_progress_false_and_standard_logging_config_silence_it(tmp_path, digits_manifest, capfd):
    fit(short_config(progress=False), tmp_path / "quiet", manifest=digits_manifest)
    assert own_output(capfd.readouterr().err) == []
    library = logging.getLogger("jointspace")
    previous = library.level
    library.setLevel(logging.WARNING)
    try:
        fit(short_config(), tmp_path / "silenced", manifest=digits_manifest)
    finally:
        library.setLevel(previous)
    assert own_output(capfd.readouterr().err) == []

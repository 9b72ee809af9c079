"""Fast encoding: inference mode, length-bucketed text batches and a backend per tower.

Backends: ``eager`` (the tower in PyTorch, float32: the reference numbers), ``bf16`` (the same
tower under bfloat16 autocast), ``int8`` (PyTorch dynamic int8 quantisation of its Linear
layers) and ``onnx`` (its graph in ONNX Runtime).
``auto`` runs each on the first batch a tower encodes and keeps the fastest whose embeddings stay
within ``min_cosine`` of eager float32: a short measured probe, logged and kept in ``choices``.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jointspace.config import ConfigError
from jointspace.encoders.base import Tower
from jointspace.errors import JointspaceError
from jointspace.progress import logger

BACKENDS = ("eager", "bf16", "int8", "onnx")
CHOICES = (*BACKENDS, "auto")
ENV_BACKEND = "JOINTSPACE_ENCODE"  # overrides encode.backend for every command and the service
PROBE_ITEMS = 32  # the probe times each backend on at most this many inputs of the first batch
PROBE_SECONDS = 0.25  # ... repeating runs until this long (at least twice), keeping the best

Runner = Callable[[torch.Tensor], torch.Tensor]
Timer = Callable[[str, Runner, torch.Tensor], float]  # (backend, runner, batch) → seconds


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads and return the count (ONNX Runtime uses the same).

    ``threads`` wins; else OMP_NUM_THREADS (which PyTorch already read) is kept; else PyTorch's
    default, one per physical core of the host, is capped at the CPUs this process may use: a
    container limited to 2 of 64 cores would otherwise run 32 threads that fight for 2.
    """
    if threads:
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS") and torch.get_num_threads() > usable_cpus():
        torch.set_num_threads(usable_cpus())
    return torch.get_num_threads()


def row_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


def text_pad_id(tower: Tower) -> int | None:
    """The padding id of a text tower whose batches are token ids (None: not bucketed)."""
    pad = getattr(tower, "pad_id", None)
    return int(pad) if tower.modality == "text" and pad is not None else None


def batches(
    tower: Tower, inputs: Sequence[Any] | torch.Tensor, batch_size: int, bucket: bool = True
) -> Iterator[tuple[np.ndarray | None, torch.Tensor]]:
    """(rows, collated batch) pairs covering ``inputs``; rows None means "the next ones in order".

    Text is tokenized at once, sorted by token length (longest first), batched, and each batch
    cut to its longest row: padding is masked out, so this changes rounding only, not results.
    """
    if isinstance(inputs, torch.Tensor):
        for start in range(0, len(inputs), batch_size):
            yield None, inputs[start : start + batch_size]
        return
    pad = text_pad_id(tower)
    if pad is None or not bucket or not len(inputs):
        for start in range(0, len(inputs), batch_size):
            yield (
                None,
                tower.collate([tower.preprocess(x) for x in inputs[start : start + batch_size]]),
            )
        return
    ids = tower.collate([tower.preprocess(x) for x in inputs])
    positions = torch.arange(1, ids.shape[1] + 1)
    lengths = ((ids != pad) * positions).amax(dim=1).clamp_min(1).numpy()  # last real token + 1
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, ids[torch.from_numpy(rows), : int(lengths[rows].max())]


def encode_inputs(
    tower: Tower,
    inputs: Sequence[Any] | torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    inference: Inference | None = None,
    bucket: bool = True,
) -> torch.Tensor:
    """``tower``'s embeddings (unnormalised, float32) of raw inputs or a collated tensor, in order.

    The caller puts the tower in eval mode; without ``inference`` the eager tower runs.
    """
    runner: Runner = tower
    chunks, orders = [], []
    with torch.inference_mode():
        for i, (rows, x) in enumerate(batches(tower, inputs, batch_size, bucket)):
            x = x.to(device)
            if i == 0 and inference is not None:
                runner = inference.runner(tower, x)
            chunks.append(runner(x).to(device).float())
            orders.append(rows)
        if not chunks:
            return torch.empty(0, tower.embed_dim, device=device)
        out = torch.cat(chunks)
        if orders[0] is not None:  # bucketed: back to the order of the inputs
            inverse = np.empty(len(out), dtype=np.int64)
            inverse[np.concatenate(orders)] = np.arange(len(out))
            out = out[torch.from_numpy(inverse).to(device)]
    return out.clone()  # a normal tensor: inference tensors refuse later use under autograd


def quantize_int8(tower: Tower) -> nn.Module:
    """A copy of the tower whose ``nn.Linear`` layers run dynamically quantised int8 on the CPU."""
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        # Per output channel: on MiniLM the worst row's cosine to fp32 rises from 0.87 to 0.93.
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(tower).cpu().eval(), {nn.Linear: qconfig}, dtype=torch.qint8
        )
    for module in quantized.modules():
        if isinstance(module, nn.TransformerEncoderLayer):
            # PyTorch's fused encoder-layer kernel reads float weights that quantised layers lack;
            # any forward hook makes the layer take its plain path instead.
            module.register_forward_pre_hook(lambda *_: None)
    return quantized


class Autocast:
    """The tower under bfloat16 autocast: matmuls and convolutions in bfloat16, float32 out.

    Fast only where the CPU multiplies bfloat16 natively (AVX512-BF16, AMX) or on a GPU;
    elsewhere it is emulated and slower than float32, so ``auto`` measures before it picks.
    """

    name = "bf16"

    def __init__(self, tower: Tower):
        # A copy whose Linear and convolution weights are bfloat16 already: autocast would cast
        # every weight again on every call, which dominates a single query (MiniLM: 22M weights).
        self.tower = copy.deepcopy(tower)
        for module in self.tower.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                module.to(torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.tower(x).float()


def build_runner(name: str, tower: Tower, threads: int | None = None) -> Runner:
    """A callable from collated batch to embeddings for backend ``name``."""
    if name == "eager":
        return tower
    device = next(tower.parameters()).device
    if name == "bf16" and device.type in ("cpu", "cuda"):
        return Autocast(tower)
    if device.type != "cpu":
        raise ConfigError(f"encode.backend {name!r} runs on the CPU; this model is on {device}")
    if name == "int8":
        return quantize_int8(tower)
    if name == "onnx":
        from jointspace.encoders.onnx import OnnxSession, export_tower

        return OnnxSession(export_tower(tower), threads=threads)
    raise ConfigError(f"encode.backend: unknown backend {name!r}; choose one of {CHOICES}")


def time_runner(name: str, runner: Runner, sample: torch.Tensor) -> float:
    """Seconds for one run on ``sample``: the best of runs that fill ``PROBE_SECONDS``."""
    runs: list[float] = []
    while len(runs) < 2 or (sum(runs) < PROBE_SECONDS and len(runs) < 50):
        start = time.perf_counter()
        runner(sample)
        runs.append(time.perf_counter() - start)
    return min(runs)


@dataclass
class Measurement:
    """A backend on the probe batch: throughput and its worst cosine to eager float32."""

    items_per_s: float
    min_cosine: float


def choose_backend(measured: dict[str, Measurement], min_cosine: float) -> str:
    """The fastest backend whose embeddings keep ``min_cosine`` (eager always qualifies)."""
    good = {n: m for n, m in measured.items() if n == "eager" or m.min_cosine >= min_cosine}
    return max(good, key=lambda n: good[n].items_per_s) if good else "eager"


def weights_version(tower: nn.Module) -> int:
    """Changes whenever a parameter or buffer is written in place (training, load_state_dict)."""
    return sum(t._version for t in (*tower.parameters(), *tower.buffers()))


class Inference:
    """Which backend runs each tower when a model encodes: forced, or picked by a probe."""

    def __init__(
        self,
        backend: str = "eager",
        *,
        min_cosine: float = 0.999,
        threads: int | None = None,
        timer: Timer = time_runner,
    ):
        if backend not in CHOICES:
            raise ConfigError(f"encode.backend: {backend!r} is not one of {', '.join(CHOICES)}")
        self.backend, self.min_cosine, self.threads, self.timer = (
            backend,
            min_cosine,
            threads,
            timer,
        )
        self.choices: dict[str, dict[str, Any]] = {}  # modality → what ran it and why
        self._runners: dict[int, tuple[int, Runner]] = {}

    @classmethod
    def from_config(cls, config: Any) -> Inference:
        """From an ``EncodeConfig``; ``$JOINTSPACE_ENCODE`` overrides its backend."""
        backend = os.environ.get(ENV_BACKEND) or config.backend
        threads = configure_threads(config.threads)
        return cls(backend, min_cosine=config.min_cosine, threads=threads)

    @property
    def uses_feature_cache(self) -> bool:
        """Cached float32 features serve eager and auto; a forced other backend runs whole."""
        return self.backend in ("eager", "auto")

    def runner(self, tower: Tower, sample: torch.Tensor) -> Runner:
        """The runner for ``tower``, built (for ``auto``: chosen on ``sample``) once per weights."""
        version = weights_version(tower)
        known = self._runners.get(id(tower))
        if known is not None and known[0] == version:
            return known[1]
        with torch.inference_mode(False):  # exporting and copying need ordinary tensors
            if self.backend == "auto":
                runner = self.probe(tower, sample)
            else:
                runner = build_runner(self.backend, tower, self.threads)
                self.choices[tower.modality] = {"backend": self.backend, "forced": True}
        self._runners[id(tower)] = (version, runner)
        return runner

    def probe(self, tower: Tower, sample: torch.Tensor) -> Runner:
        """Time every backend that builds here on ``sample``; keep the fastest close enough."""
        sample = sample[:PROBE_ITEMS].clone()
        with torch.inference_mode():
            reference = tower(sample).float()
        measured: dict[str, Measurement] = {}
        runners: dict[str, Runner] = {}
        # On a GPU only bf16 autocast competes with eager (int8 and ONNX Runtime run on the CPU).
        candidates = BACKENDS if sample.device.type == "cpu" else ("eager", "bf16")
        for name in candidates:
            try:
                runner = build_runner(name, tower, self.threads)
                with torch.inference_mode():
                    output = runner(sample).to(reference.device)
                cosine = float(row_cosines(reference, output).min())
            except (JointspaceError, ImportError, RuntimeError) as err:  # e.g. no bf16 kernel
                logger().info("encode %s: %s unavailable (%s)", tower.modality, name, err)
                continue
            runners[name] = runner
            with torch.inference_mode():
                seconds = self.timer(name, runner, sample)
            measured[name] = Measurement(len(sample) / seconds, cosine)
        chosen = choose_backend(measured, self.min_cosine)
        self.choices[tower.modality] = {
            "backend": chosen,
            "forced": False,
            "probe_items": len(sample),
            "min_cosine": self.min_cosine,
            "measured": {n: vars(m) for n, m in measured.items()},
        }
        summary = ", ".join(
            f"{n} {m.items_per_s:.0f}/s (cos {m.min_cosine:.5f})" for n, m in measured.items()
        )
        logger().info("encode %s: %s → %s", tower.modality, summary, chosen)
        return runners[chosen]

"""Towers as ONNX graphs (TorchScript exporter) and ONNX Runtime sessions that run them.

A graph takes what ``tower.collate`` gives (token ids, pixels or waveforms) with the batch (and
the token length) left free, and returns the tower's embedding; ``onnx``/``onnxruntime`` are
imported only here, when a graph is made or run.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jointspace.encoders.base import Tower
from jointspace.errors import InputError, MissingPackageError

OPSET = 17  # the first with LayerNormalization and STFT as single ops
INPUT_NAMES = {"text": "input_ids", "image": "pixel_values", "audio": "waveforms"}
OUTPUT_NAME = "embedding"
# Two lengths, so the exporter cannot bake one sequence length into the graph.
EXAMPLE_TEXTS = ("a photo of a cat", "two dogs play with a red ball on the grass near a river")


def onnxruntime() -> Any:
    """The ``onnxruntime`` module, or one line saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingPackageError("ONNX encoding needs `pip install onnx onnxruntime`") from err
    return ort


class _Graph(nn.Module):
    """The tower's forward, optionally L2-normalised: what the exported graph computes."""

    def __init__(self, tower: Tower, normalize: bool):
        super().__init__()
        self.tower, self.normalize = tower, normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tower(x)
        return F.normalize(y, dim=-1) if self.normalize else y


def example_batch(tower: Tower) -> torch.Tensor:
    """A small collated batch of the tower's input, for tracing and parity checks."""
    generator = torch.Generator().manual_seed(0)
    if tower.modality == "text":
        return tower.collate([tower.preprocess(t) for t in EXAMPLE_TEXTS])
    if tower.modality == "image":
        return torch.rand(2, 3, *image_size(tower), generator=generator) * 2 - 1
    if tower.modality == "audio":
        samples = round(tower.params["sample_rate"] * tower.params["seconds"])
        return torch.randn(2, samples, generator=generator) * 0.1
    raise InputError(f"no ONNX export for a {tower.modality!r} tower")


def image_size(tower: Tower) -> tuple[int, int]:
    """Height and width of the tower's input images (HF towers: their processor's output)."""
    size = getattr(getattr(tower, "transform", None), "size", None)
    if isinstance(size, tuple):  # an HFImageProcessor
        return int(size[0]), int(size[1])
    side = int(tower.params["image_size"])
    return side, side


def text_padding(tower: Tower) -> tuple[int, int | None]:
    """The id a text batch is padded with, and its length when every batch has one length.

    ``pad_id`` None: the tower pads to ``max_len`` with a real token (SigLIP, as trained)."""
    pad = getattr(tower, "pad_id", 0)
    if pad is None:
        return int(tower.pad_value), max_length(tower)
    return int(pad), None


def max_length(tower: Tower) -> int:
    """The most tokens the tower reads (HF towers: resolved from the checkpoint)."""
    return int(getattr(tower, "max_len", None) or tower.params["max_len"])


def dynamic_axes(modality: str) -> dict[str, dict[int, str]]:
    """Which axes of the input and output may change size between calls."""
    name = INPUT_NAMES[modality]
    axes = {0: "batch", 1: "length"} if modality == "text" else {0: "batch"}
    return {name: axes, OUTPUT_NAME: {0: "batch"}}


@dataclass
class TowerGraph:
    """A tower's serialised ONNX model and how to feed it.

    ``length``: the token length a text graph was traced at when the exporter fixed it (PyTorch's
    ``nn.MultiheadAttention`` bakes the sequence length in); inputs are padded to it.
    """

    modality: str
    model: bytes
    length: int | None = None
    pad_id: int = 0

    @property
    def input_name(self) -> str:
        return INPUT_NAMES[self.modality]


def export_tower(tower: Tower, *, normalize: bool = False) -> TowerGraph:
    """The tower (in eval mode, on the CPU) as an ONNX graph with a free batch size (and length)."""
    if tower.modality not in INPUT_NAMES:
        raise InputError(f"no ONNX export for a {tower.modality!r} tower")
    example = example_batch(tower)
    graph = TowerGraph(tower.modality, _export(tower, example, normalize))
    if tower.modality == "text":
        graph.pad_id, fixed = text_padding(tower)
        if fixed is not None:  # the example is already padded to it
            graph.length = fixed
            return graph
        longer = F.pad(example, (0, 3), value=graph.pad_id)
        try:
            OnnxSession(graph, quiet=True)(longer)
        except Exception:  # onnxruntime's Fail: the length is baked in; trace at the longest
            graph.length = max_length(tower)
            padded = F.pad(example, (0, graph.length - example.shape[1]), value=graph.pad_id)
            graph.model = _export(tower, padded, normalize)
    return graph


def _export(tower: Tower, example: torch.Tensor, normalize: bool) -> bytes:
    was_training = tower.training
    graph = _Graph(tower, normalize).eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example,),
                buffer,
                # The TorchScript exporter: torch.export (dynamo=True) needs onnxscript, takes
                # 5x as long and gives no faster graph here.
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAMES[tower.modality]],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes(tower.modality),
            )
    except Exception as err:  # the exporter raises many types; name the tower that failed
        # Its messages end in a dump of the graph ("[Caused by the value …"): keep the reason.
        reason = str(err).split("[Caused by")[0].strip().splitlines()
        raise InputError(
            f"the {tower.modality} tower cannot be exported to ONNX: "
            f"{reason[0][:300] if reason else type(err).__name__}"
        ) from err
    finally:
        tower.train(was_training)
    return buffer.getvalue()


class OnnxSession:
    """One tower's graph in ONNX Runtime on the CPU: a collated batch in, embeddings out."""

    name = "onnx"

    def __init__(self, graph: TowerGraph, *, threads: int | None = None, quiet: bool = False):
        ort = onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 4 if quiet else 2  # quiet: failures are expected, not news
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (all cores)
        options.inter_op_num_threads = 1  # the graph is a chain: parallel branches buy nothing
        # Idle workers sleep instead of spinning: a spinning pool keeps a core busy after each
        # batch, slowing the tokenizer, the index and PyTorch next to it (on 2 cores, a bf16
        # batch right after an ONNX one took 1.3x as long); ONNX batches themselves lose ~2 %.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.graph = graph
        self.session = ort.InferenceSession(
            graph.model, options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.graph.length is not None:
            length = self.graph.length
            x = F.pad(x[:, :length], (0, length - x.shape[1]), value=self.graph.pad_id)
        array = x.detach().cpu().numpy()
        return torch.from_numpy(self.session.run(None, {self.graph.input_name: array})[0])

"""JointModel: one tower per modality, all projecting into one normalised space."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jointspace.config import ConfigError, ModelConfig
from jointspace.encoders.base import Tower
from jointspace.errors import InputError, UnknownNameError
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.inference import Inference, encode_inputs
from jointspace.models.modes import evaluating
from jointspace.models.tokens import pad_tokens


class JointModel(nn.Module):
    """Towers keyed by modality plus the learnable logits the objectives use, as in OpenCLIP:
    ``logit_scale`` (log inverse temperature) and, for SigLIP, ``logit_bias`` (else ``None``).

    With a ``feature_cache`` set, ``encode`` reads frozen towers' pooled features from it.
    """

    logit_bias: nn.Parameter | None

    def __init__(self, towers: Mapping[str, Tower], config: ModelConfig):
        super().__init__()
        self.config = config
        self.towers = nn.ModuleDict(dict(towers))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        bias = config.init_logit_bias
        self.register_parameter(
            "logit_bias", None if bias is None else nn.Parameter(torch.tensor(float(bias)))
        )
        self.feature_cache: FeatureCache | None = None
        self.inference: Inference | None = None  # None: eager float32 (models.inference)

    def add_logit_bias(self, init_bias: float, init_scale: float | None = None) -> None:
        """Give the model a learnable logit bias (SigLIP's), restarting the scale at ``init_scale``.

        The config records both, so the saved model is rebuilt with the bias.
        """
        if init_scale is not None and not init_scale > 0:
            raise ConfigError(f"the initial logit scale must be positive, got {init_scale}")
        device = self.logit_scale.device
        self.logit_bias = nn.Parameter(torch.tensor(float(init_bias), device=device))
        changes: dict[str, float] = {"init_logit_bias": float(init_bias)}
        if init_scale is not None:
            with torch.no_grad():
                self.logit_scale.fill_(math.log(init_scale))
            changes["init_temperature"] = 1.0 / init_scale
        self.config = dataclasses.replace(self.config, **changes)

    @property
    def modalities(self) -> list[str]:
        return list(self.towers)

    def tower(self, modality: str) -> Tower:
        """The tower for ``modality``, with a clear error naming the ones this model has."""
        if modality not in self.towers:
            raise UnknownNameError(
                f"this model has no {modality!r} tower; it has {self.modalities}"
            )
        return self.towers[modality]

    def forward(
        self,
        inputs: Mapping[str, Any],
        pooled: Collection[str] = (),
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """L2-normalised embeddings for every modality in ``inputs``.

        Modalities named in ``pooled`` hold backbone features already, so only their head runs.
        ``present`` (modality → bool ``[N]``, data/collate.py): a tower runs on the rows holding
        its modality alone; the others (fillers, never scored) get zero embeddings.
        """
        out = {}
        for m, x in inputs.items():
            rows = None if present is None or m not in present else present[m]
            if rows is not None and (bool(rows.all()) or not bool(rows.any())):
                # Every row: the whole input, exactly as without marks. None (all hidden by
                # modality dropout): the fillers run, unscored, so the tower still gets a graph.
                rows = None
            if rows is not None:
                x = select_rows(x, rows, len(rows))
            embedded = F.normalize(
                self.tower(m).head(x) if m in pooled else self.tower(m)(x), dim=-1
            )
            if rows is not None:
                full = embedded.new_zeros((len(rows), embedded.shape[-1]))
                embedded = full.index_put((rows.nonzero().squeeze(1),), embedded)
            out[m] = embedded
        return out

    @torch.no_grad()
    def encode(
        self,
        inputs: Sequence[Any] | torch.Tensor,
        modality: str,
        *,
        batch_size: int = 64,
        normalize: bool = True,
        output: Literal["numpy", "torch"] = "numpy",
        bucket: bool = True,
    ) -> np.ndarray | torch.Tensor:
        """Embed raw inputs or an already collated tensor.

        Images: paths, bytes, PIL images or H×W[×3|4] arrays; audio: paths, bytes or (array, rate).
        Texts run in batches of similar length (``bucket=False``: in input order, for hooks).
        """
        tower = self.tower(modality)
        device = next(self.parameters()).device
        with evaluating(self):
            if self._cached(tower, inputs):
                features = self.feature_cache.features(tower, _as_list(inputs))
                chunks = [tower.head(x.to(device)) for x in features.split(batch_size)]
                out = (
                    torch.cat(chunks) if chunks else torch.empty(0, tower.embed_dim, device=device)
                )
            else:
                out = encode_inputs(
                    tower,
                    _as_list(inputs),
                    batch_size=batch_size,
                    device=device,
                    inference=self.inference,
                    bucket=bucket,
                )
        out = F.normalize(out.float(), dim=-1) if normalize else out.float()
        return out.cpu().numpy() if output == "numpy" else out

    @torch.no_grad()
    def encode_tokens(
        self, inputs: Sequence[Any], modality: str, *, batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token or patch states of raw inputs and their masks, on the CPU, padded to one length."""
        tower = self.tower(modality)
        with evaluating(self):
            chunks = [
                (states.float().cpu(), mask.cpu())
                for states, mask in map(tower.tokens, self._batches(tower, inputs, batch_size))
            ]
        if not chunks:
            raise InputError(f"no {modality} inputs to encode")
        return pad_tokens(chunks)

    def _cached(self, tower: Tower, inputs: Sequence[Any] | torch.Tensor) -> bool:
        # Collated tensors carry no content key to look up: only raw inputs use the cache.
        raw = not isinstance(inputs, torch.Tensor) and len(inputs) > 0
        fast = self.inference is not None and not self.inference.uses_feature_cache
        if not (raw and self.feature_cache is not None and tower.frozen) or fast:
            return False
        # (samples, rate) audio pairs have no content key yet: they run the whole tower.
        return not any(isinstance(x, tuple) for x in _as_list(inputs))

    def _batches(self, tower: Tower, inputs: Sequence[Any] | torch.Tensor, batch_size: int):
        device = next(self.parameters()).device
        if isinstance(inputs, torch.Tensor):
            for start in range(0, len(inputs), batch_size):
                yield inputs[start : start + batch_size].to(device)
            return
        inputs = _as_list(inputs)
        for start in range(0, len(inputs), batch_size):
            items = [tower.preprocess(x) for x in inputs[start : start + batch_size]]
            yield tower.collate(items).to(device)

    def save(self, directory: str) -> None:
        """Write ``config.json``, ``model.safetensors`` and tower assets (no pickle)."""
        from jointspace.models.io import save_model

        save_model(self, directory)


def select_rows(x: Any, rows: torch.Tensor, n: int) -> Any:
    """The rows a bool ``[n]`` mask keeps of a tower input: a tensor, or a mapping or sequence of
    them (a collate's output); tensors without ``n`` leading rows are shared by every row."""
    if isinstance(x, torch.Tensor):
        return x[rows.to(x.device)] if x.ndim and len(x) == n else x
    if isinstance(x, Mapping):
        return {k: select_rows(v, rows, n) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(select_rows(v, rows, n) for v in x)
    return x


def _as_list(inputs: Sequence[Any]) -> Sequence[Any]:
    return [inputs] if isinstance(inputs, str) else inputs

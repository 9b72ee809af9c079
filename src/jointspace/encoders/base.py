"""The tower contract: raw input → per-sample preprocess → batch collate → embedding."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from jointspace.config import ConfigError


class Tower(nn.Module):
    """One modality's encoder ending in a projection into the shared space.

    Subclasses set ``modality``, a projection ``head`` and implement ``preprocess``, ``collate``
    and ``pooled`` (backbone features before the head); ``forward`` is ``head(pooled(x))``.
    ``params`` holds the keyword arguments that rebuild the tower from ``config.json``.
    """

    modality: ClassVar[str] = ""
    # Constructor arguments that ``create`` supplies itself (a backbone), never a config's params.
    built_args: ClassVar[tuple[str, ...]] = ()

    def __init__(self, embed_dim: int, params: dict[str, Any]):
        super().__init__()
        self.embed_dim = embed_dim
        self.params = dict(params)
        self.locked = False
        self.unlocked: list[nn.Module] = []
        self._fingerprint: str | None = None
        self.register_load_state_dict_post_hook(lambda *_: setattr(self, "_fingerprint", None))

    @classmethod
    def param_names(cls) -> list[str]:
        """The params a config may give this tower: its constructor's arguments with defaults."""
        arguments = inspect.signature(cls).parameters.items()
        return sorted(
            name for name, p in arguments if p.default is not p.empty and name not in cls.built_args
        )

    @property
    def frozen(self) -> bool:
        """True when only the head trains: the backbone maps an input to fixed features."""
        return self.locked and all(m is self.head for m in self.unlocked)

    def fingerprint(self) -> str:
        """A hash of the backbone weights and preprocessing: equal means equal pooled features."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(json.dumps(self.preprocessing(), sort_keys=True).encode())
            for name, tensor in sorted(self.state_dict().items()):
                if not name.startswith("head."):
                    flat = tensor.detach().cpu().contiguous().reshape(-1)
                    digest.update(name.encode() + flat.view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def preprocessing(self) -> dict[str, Any]:
        """Everything besides weights that decides ``pooled(collate([preprocess(raw)]))``."""
        params = {k: v for k, v in self.params.items() if k != "head"}
        return {"tower": type(self).__name__, "params": params}

    def layers(self) -> list[nn.Module]:
        """The backbone's blocks in order, for ``unlock_last``; subclasses that support it."""
        raise NotImplementedError(f"{type(self).__name__} does not list its layers")

    def checkpoint_layers(self, enabled: bool = True) -> Tower:
        """Run each of ``layers()`` under activation checkpointing while it trains (or stop).

        Their activations are recomputed in backward instead of stored, with the RNG state of the
        forward (dropout draws the same masks); frozen layers (eval mode) and inference run plain.
        """
        try:
            layers = self.layers()
        except NotImplementedError:
            if not enabled:
                return self
            raise ConfigError(
                f"train.activation_checkpointing: the {type(self).__name__} tower does not list "
                "its layers (Tower.layers), so it cannot checkpoint them"
            ) from None
        for layer in layers:
            if enabled:
                # An instance attribute: weights and state-dict names stay as they are.
                layer.__dict__["forward"] = functools.partial(_checkpointed, layer)
            else:
                layer.__dict__.pop("forward", None)
        return self

    def lock(self, unlock_last: int = 0) -> Tower:
        """Freeze everything but the projection ``head`` (LiT), then unfreeze the last N layers."""
        layers = self.layers() if unlock_last else []
        if unlock_last < 0 or unlock_last > len(layers):
            raise ConfigError(f"unlock_last={unlock_last}: this tower has {len(layers)} layers")
        self.requires_grad_(False)
        self.unlocked = [self.head, *layers[len(layers) - unlock_last :]]
        for module in self.unlocked:
            module.requires_grad_(True)
        self.locked = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> Tower:
        # Frozen parts stay in eval mode (no dropout, fixed norm statistics) even while training.
        super().train(mode and not self.locked)
        for module in self.unlocked if self.locked else []:
            module.train(mode)
        return self

    def preprocess(self, raw: Any, rng: np.random.Generator | None = None) -> Any:
        """Turn one raw sample into what ``collate`` stacks; ``rng`` enables augmentation."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> torch.Tensor:
        """Stack preprocessed samples into the tensor ``forward`` takes."""
        raise NotImplementedError

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features for a collated batch, before the projection head."""
        raise NotImplementedError

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token or patch states ``[batch, length, dim]`` and their validity mask, for matchers."""
        raise NotImplementedError(f"{type(self).__name__} does not expose token states")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))

    def save_assets(self, directory: Path) -> None:
        """Write files besides the weights (e.g. a tokenizer); none by default."""

    @classmethod
    def create(
        cls,
        embed_dim: int,
        params: dict[str, Any],
        *,
        corpus: list[str] | None = None,
        assets_dir: Path | None = None,
    ) -> Tower:
        """Build from config params; ``corpus`` trains assets, ``assets_dir`` loads saved ones."""
        return cls(embed_dim, **params)


def _checkpointed(layer: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = type(layer).forward.__get__(layer)
    if layer.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)

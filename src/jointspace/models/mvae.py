"""Multimodal VAE (Wu & Goodman, 2018): per-modality Gaussian encoders fused by a product of
experts with a prior expert, per-modality decoders, and the sub-sampled ELBO, so any subset of
modalities can be encoded and any modality generated from any other.

The loss lives here (its pure pieces in models/elbo.py), not in objectives/: every ELBO term
encodes a subset and runs the decoders on its sample, so it needs the module, and objectives sit
above models, which may not import them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from jointspace.config import ConfigError
from jointspace.models.elbo import LIKELIHOODS, elbo_term, kl_to_prior, log_likelihood, mean_of
from jointspace.models.poe import product_of_experts

Inputs = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: its likelihood, one row's shape — (C, H, W) pixels, (vocab,) bag-of-words
    counts, (mels, frames) log-mel — and the weight of its log-likelihood in the ELBO."""

    likelihood: str
    shape: tuple[int, ...]
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(
                f"mvae: unknown likelihood {self.likelihood!r}; known: {', '.join(LIKELIHOODS)}"
            )
        if not self.shape or any(int(n) < 1 for n in self.shape):
            raise ConfigError(f"mvae: shape {self.shape} must be one or more positive sizes")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
        nn.Linear(hidden, outputs),
    )  # fmt: skip


class MultimodalVAE(nn.Module):
    """An MVAE over ``specs`` {modality: ModalitySpec} with a ``latent``-dimensional space."""

    def __init__(self, specs: Mapping[str, ModalitySpec], latent: int = 16, hidden: int = 128):
        super().__init__()
        if not specs:
            raise ConfigError("mvae: needs at least one modality")
        if latent < 1 or hidden < 1:
            raise ConfigError(f"mvae: latent {latent} and hidden {hidden} must be positive")
        self.specs, self.latent = dict(specs), latent
        self.modalities = sorted(specs)
        # Encoders return mean and log-variance side by side; decoders the likelihood's params.
        self.encoders = nn.ModuleDict(
            {m: mlp(s.size, hidden, 2 * latent) for m, s in specs.items()}
        )
        self.decoders = nn.ModuleDict({m: mlp(latent, hidden, s.size) for m, s in specs.items()})

    def _checked(self, inputs: Inputs) -> list[str]:
        """The modalities given, in a fixed order; unknown names and wrong shapes are refused."""
        if unknown := sorted(set(inputs) - set(self.modalities)):
            raise ConfigError(f"mvae: unknown modality {unknown[0]!r}; it knows {self.modalities}")
        if not inputs:
            raise ConfigError(f"mvae: no modality given; give any of {self.modalities}")
        used = [m for m in self.modalities if m in inputs]
        batches = {inputs[m].shape[0] for m in used}
        for m in used:
            if tuple(inputs[m].shape[1:]) != self.specs[m].shape:
                raise ConfigError(
                    f"mvae: {m} rows have shape {tuple(inputs[m].shape[1:])}; "
                    f"expected {self.specs[m].shape}"
                )
        if len(batches) > 1:
            raise ConfigError(f"mvae: modalities have different batch sizes {sorted(batches)}")
        return used

    def experts(self, inputs: Inputs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each given modality's own Gaussian posterior ``(mu, logvar)``, each [B, latent]."""
        out = {}
        for m in self._checked(inputs):
            mu, logvar = self.encoders[m](inputs[m].flatten(1).float()).chunk(2, dim=-1)
            out[m] = (mu, logvar)
        return out

    def encode(
        self, inputs: Inputs, masks: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused posterior ``(mu, logvar)`` [B, latent] of any subset of the modalities;
        ``masks`` {modality: [B] bool} marks rows where a given modality is absent."""
        experts = self.experts(inputs)
        masks = masks or {}
        first = next(iter(experts.values()))[0]
        present = [
            masks[m].to(first.device).bool()
            if m in masks
            else torch.ones(first.shape[0], dtype=torch.bool, device=first.device)
            for m in experts
        ]
        return product_of_experts(
            [e[0] for e in experts.values()], [e[1] for e in experts.values()], present
        )

    def decode(
        self, z: torch.Tensor, modalities: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """The decoders' likelihood parameters for each of ``modalities`` (default all), each in
        its modality's row shape: logits (bernoulli, multinomial) or means (gaussian)."""
        names = list(modalities) if modalities is not None else self.modalities
        if unknown := sorted(set(names) - set(self.modalities)):
            raise ConfigError(f"mvae: unknown modality {unknown[0]!r}; it knows {self.modalities}")
        return {m: self.decoders[m](z).view(-1, *self.specs[m].shape) for m in names}

    @torch.no_grad()
    def generate(self, from_inputs: Inputs, to_modality: str) -> torch.Tensor:
        """``to_modality``'s expected value (pixel probabilities, word distribution, log-mel
        means) decoded from the posterior mean given ``from_inputs``."""
        mu, _ = self.encode(from_inputs)
        params = self.decode(mu, [to_modality])[to_modality]
        return mean_of(self.specs[to_modality].likelihood, params)

    def subsets(self, given: Sequence[str], k: int = 0, seed: int | None = None) -> list:
        """Wu & Goodman's sub-sampled terms: the joint, each single modality, and ``k`` random
        subsets of two or more (fewer than all) of the ``given`` modalities."""
        chosen = [tuple(given)] + [(m,) for m in given if len(given) > 1]
        draw = random.Random(seed)
        if len(given) > 2:
            for _ in range(k):
                chosen.append(
                    tuple(sorted(draw.sample(list(given), draw.randint(2, len(given) - 1))))
                )
        return chosen

    def elbo(
        self,
        inputs: Inputs,
        masks: Mapping[str, torch.Tensor] | None = None,
        subsets: Sequence[Sequence[str]] | None = None,
        *,
        k: int = 0,
        beta: float = 1.0,
        seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"mvae_loss": sum, "mvae_<subset>_loss": ...}``: the negative ELBO of each subset's
        posterior (default: joint + singles + ``k`` random), each reconstructing every modality
        present in the row, averaged over the rows where the subset has any modality."""
        given = self._checked(inputs)
        masks = masks or {}
        rows = inputs[given[0]].shape[0]
        device = inputs[given[0]].device
        present = {
            m: masks[m].to(device).bool() if m in masks else torch.ones(rows, dtype=torch.bool,
                                                                         device=device)
            for m in given
        }  # fmt: skip
        experts = self.experts(inputs)
        weights = {m: self.specs[m].weight for m in given}
        losses: dict[str, torch.Tensor] = {}
        for subset in subsets if subsets is not None else self.subsets(given, k, seed):
            if not subset:
                raise ConfigError("mvae: an empty subset; each ELBO term needs a modality")
            if unknown := sorted(set(subset) - set(given)):
                raise ConfigError(f"mvae: subset {list(subset)} names {unknown[0]!r}, not given")
            mu, logvar = product_of_experts(
                [experts[m][0] for m in subset], [experts[m][1] for m in subset],
                [present[m] for m in subset],
            )  # fmt: skip
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            decoded = self.decode(z, given)
            lls = {
                m: log_likelihood(self.specs[m].likelihood, decoded[m], inputs[m]) for m in given
            }
            seen = torch.stack([present[m] for m in subset]).any(0)
            name = "joint" if len(subset) == len(given) else "+".join(subset)
            losses[f"mvae_{name}_loss"] = losses.get(f"mvae_{name}_loss", 0) + elbo_term(
                lls, present, kl_to_prior(mu, logvar), seen, weights=weights, beta=beta
            )
        losses["mvae_loss"] = torch.stack(list(losses.values())).sum()
        return losses

"""Canonical Correlation Analysis: linear CCA in closed form, and the deep CCA loss.

Linear CCA (Hotelling 1936) whitens each view with its regularised covariance and takes the SVD
of the whitened cross-covariance; deep CCA (Andrew et al. 2013) maximises the same correlations
of two networks' outputs, here as a loss on a batch of embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from jointspace.config import ConfigError
from jointspace.errors import InputError
from jointspace.objectives.base import PairwiseObjective


def _inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(1.0 / np.sqrt(np.clip(values, 1e-12, None))) @ vectors.T


class LinearCCA:
    """Regularised linear CCA with ``fit(X, Y)`` (returns self) and ``transform``."""

    def __init__(self, n_components: int = 16, reg: float = 1e-4):
        self.n_components, self.reg = n_components, reg

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearCCA:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise InputError(
                f"CCA needs two 2-D views with the same rows, got {x.shape}, {y.shape}"
            )
        k = min(self.n_components, x.shape[1], y.shape[1])
        if len(x) <= k:
            raise InputError(f"CCA needs more rows than components: {len(x)} rows, {k} components")
        self.mean_x_, self.mean_y_ = x.mean(0), y.mean(0)
        xc, yc = x - self.mean_x_, y - self.mean_y_
        n = len(x) - 1
        # Ridge on each covariance, scaled to its trace so `reg` is unit-free.
        cxx = xc.T @ xc / n
        cyy = yc.T @ yc / n
        cxx += self.reg * np.trace(cxx) / len(cxx) * np.eye(len(cxx))
        cyy += self.reg * np.trace(cyy) / len(cyy) * np.eye(len(cyy))
        wx, wy = _inverse_sqrt(cxx), _inverse_sqrt(cyy)
        u, s, vt = np.linalg.svd(wx @ (xc.T @ yc / n) @ wy)
        self.x_weights_, self.y_weights_ = wx @ u[:, :k], wy @ vt[:k].T
        self.correlations_ = s[:k]
        return self

    def transform(self, x: np.ndarray, y: np.ndarray | None = None):
        """Canonical variates of ``x`` (and ``y``): unit variance, correlations on the diagonal."""
        if not hasattr(self, "x_weights_"):
            raise RuntimeError("LinearCCA is not fitted: call fit(X, Y) first")
        zx = (np.asarray(x, np.float64) - self.mean_x_) @ self.x_weights_
        if y is None:
            return zx
        return zx, (np.asarray(y, np.float64) - self.mean_y_) @ self.y_weights_


def dcca_loss(
    a: torch.Tensor, b: torch.Tensor, top_k: int | None = None, reg: float = 1e-3
) -> torch.Tensor:
    """Minus the sum of the top-k canonical correlations of two ``[N, D]`` batches.

    Both covariances get a ridge ``reg`` so that a batch no larger than the dimension (a singular
    covariance) still gives finite correlations and gradients instead of NaN.
    """
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"dcca_loss needs [N, D] batches with one N, got {a.shape}, {b.shape}")
    if len(a) < 2:
        raise ConfigError("dcca_loss needs a batch of at least 2 rows: raise train.batch_size")
    a, b = a.double(), b.double()
    ac, bc = a - a.mean(0), b - b.mean(0)
    n = len(a) - 1
    saa = ac.T @ ac / n + reg * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    sbb = bc.T @ bc / n + reg * torch.eye(b.shape[1], dtype=b.dtype, device=b.device)
    # Whiten with Cholesky factors, not eigh: eigh's gradient divides by eigenvalue gaps, which
    # vanish when the batch is smaller than the dimension (many eigenvalues equal `reg`).
    la, lb = torch.linalg.cholesky(saa), torch.linalg.cholesky(sbb)
    t = torch.linalg.solve_triangular(la, ac.T @ bc / n, upper=False)
    t = torch.linalg.solve_triangular(lb, t.T, upper=False).T
    eigen = torch.linalg.eigvalsh(t.T @ t).clamp_min(1e-12)  # squared canonical correlations
    # The cross-covariance has rank at most N − 1: never count more correlations than that.
    k = min(top_k or min(a.shape[1], b.shape[1]), n)
    return -eigen.flip(0)[:k].sqrt().sum().float()


class DeepCCAObjective(PairwiseObjective):
    """Deep CCA over every pair of modalities: maximise the top-k canonical correlations."""

    name = "dcca"
    uses_positives = False
    min_rows = 2  # correlations need two rows: a pair with fewer present is skipped

    def __init__(self, top_k: int | None = None, reg: float = 1e-3, anchor: str | None = None):
        super().__init__(anchor)
        self.top_k, self.reg = top_k, reg

    def pair_loss(self, a, b, logit_scale, positives, logit_bias=None) -> torch.Tensor:
        return dcca_loss(a, b, self.top_k, self.reg)

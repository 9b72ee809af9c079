"""Tiled kernels: CLIP's log-sum-exps and SigLIP's sum over an ``[N, N]`` score matrix, exact,
one ``block × block`` tile at a time, so memory is O(N·d + block²) instead of O(N²).

CLIP's forward keeps per-row and per-column statistics only (an online log-sum-exp); its
backward recomputes each tile's scores. SigLIP's tiles are independent: one pass gives the loss
and its gradients. Duplicate masks come one tile at a time from group ids
(:class:`~jointspace.objectives.masks.Positives`). Everything runs in float32, autocast or not.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from jointspace.config import ConfigError
from jointspace.objectives.masks import Positives

# Shifting a tile by one value for every row and column (one exp instead of two) is exact while
# each row's and column's largest term stays above e^-60, far from float32's smallest normal.
SPREAD = 60.0
NEG_INF = float("-inf")
# Rows per tile when a caller gives none: 4096² float32 scores are 64 MiB.
DEFAULT_BLOCK = 4096


def check_block(name: str, block: int | None) -> int | None:
    """``block`` as a config gives it: null (the naive loss) or a positive whole number."""
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
        raise ConfigError(
            f"objectives: {name} block must be a positive whole number of rows or null, "
            f"got {block!r}"
        )
    return block


class Tiling:
    """The square tiles of an ``[N, N]`` score matrix and, where rows share groups, their masks."""

    def __init__(self, n: int, block: int, positives: Positives | None):
        if block < 1:
            raise ValueError(f"block must be a positive number of rows, got {block}")
        self.spans = [slice(i, min(i + block, n)) for i in range(0, n, block)]
        self.positives = positives
        # Only tiles holding a row and a column with partners elsewhere can need a mask.
        self.row_flags = self.col_flags = [False] * len(self.spans)
        if positives is not None:
            rows, cols = positives.partnered()
            self.row_flags = [bool(rows[s].any()) for s in self.spans]
            self.col_flags = [bool(cols[s].any()) for s in self.spans]

    def tiles(self) -> Iterator[tuple[int, slice, int, slice]]:
        """``(i, rows, j, cols)`` for every tile, row-block major."""
        for i, rows in enumerate(self.spans):
            for j, cols in enumerate(self.spans):
                yield i, rows, j, cols

    def shared(self, i: int, j: int) -> torch.Tensor | None:
        """Bool tile of *other* rows sharing a group (never the matrix's diagonal); None where
        no pair in the tile can share one."""
        if self.positives is None or not (self.row_flags[i] and self.col_flags[j]):
            return None
        mask = self.positives.block(self.spans[i], self.spans[j])
        if i == j:
            mask.fill_diagonal_(False)
        return mask


def _tile_lse(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column log-sum-exp of one tile (−inf where a row or column is all masked);
    ``scores`` is overwritten."""
    row_max, col_max = scores.amax(1), scores.amax(0)
    top = row_max.max()
    spread = torch.maximum(top - row_max.min(), top - col_max.min())
    if bool(spread <= SPREAD):  # NaN (an all-masked tile) takes the exact path
        exp = scores.sub_(top).exp_()
        return exp.sum(1).log_().add_(top), exp.sum(0).log_().add_(top)
    # Exact path: each row and column shifted by its own maximum (0 where all are masked).
    row_shift = torch.where(row_max.isfinite(), row_max, 0.0)
    col_shift = torch.where(col_max.isfinite(), col_max, 0.0)
    rows = (scores - row_shift[:, None]).exp_().sum(1).log_().add_(row_shift)
    cols = scores.sub_(col_shift).exp_().sum(0).log_().add_(col_shift)
    return rows, cols


def _clip_forward(a, b, tiling: Tiling):
    """Row and column log-sum-exps, and the scores themselves when they are a single tile (the
    backward then needs no recomputation, and memory stays within one tile)."""
    rows = a.new_empty(len(a))
    cols = a.new_full((len(b),), NEG_INF)
    kept = None
    for i, r in enumerate(tiling.spans):
        row = a.new_full((r.stop - r.start,), NEG_INF)
        for j, c in enumerate(tiling.spans):
            scores = _clip_scores(a, b, tiling, i, r, j, c)
            if len(tiling.spans) == 1:
                kept = scores.clone()
            tile_rows, tile_cols = _tile_lse(scores)
            row = torch.logaddexp(row, tile_rows)
            cols[c] = torch.logaddexp(cols[c], tile_cols)
        rows[r] = row
    return rows, cols, kept


def _clip_scores(a, b, tiling: Tiling, i, r, j, c) -> torch.Tensor:
    scores = a[r] @ b[c].T
    excluded = tiling.shared(i, j)
    if excluded is not None:
        scores.masked_fill_(excluded, NEG_INF)
    return scores


def _clip_tile_grad(scores, lse_r, lse_c, grad_r, grad_c) -> torch.Tensor:
    """``∂/∂scores`` of ``Σ grad_r·lse_r + Σ grad_c·lse_c`` on one tile; ``scores`` overwritten."""
    # Every score is at most its row's and its column's log-sum-exp: a bound needing no pass.
    top = torch.minimum(lse_r.max(), lse_c.max())
    spread = torch.maximum(top - lse_r.min(), top - lse_c.min())
    if bool(spread <= SPREAD):
        weight = (grad_r * (top - lse_r).exp())[:, None] + (grad_c * (top - lse_c).exp())[None, :]
        return scores.sub_(top).exp_().mul_(weight)
    by_row = (scores - lse_r[:, None]).exp_().mul_(grad_r[:, None])
    return by_row.add_(scores.sub_(lse_c).exp_().mul_(grad_c))


def _clip_backward(a, b, rows, cols, grad_rows, grad_cols, tiling: Tiling, kept, need_a, need_b):
    grad_a = torch.zeros_like(a) if need_a else None
    grad_b = torch.zeros_like(b) if need_b else None
    for i, r, j, c in tiling.tiles():
        scores = kept if kept is not None else _clip_scores(a, b, tiling, i, r, j, c)
        g = _clip_tile_grad(scores, rows[r], cols[c], grad_rows[r], grad_cols[c])
        if grad_a is not None:
            grad_a[r].addmm_(g, b[c])
        if grad_b is not None:
            grad_b[c].addmm_(g.T, a[r])
    return grad_a, grad_b


class ClipLSE(torch.autograd.Function):
    """``(lse_rows, lse_cols)`` of ``a @ b.T`` with excluded pairs masked out: exact, tiled."""

    @staticmethod
    def forward(ctx, a, b, positives: Positives | None, block: int):
        tiling = Tiling(len(a), block, positives)
        with torch.autocast(a.device.type, enabled=False):
            rows, cols, kept = _clip_forward(a, b, tiling)
        ctx.save_for_backward(a, b, rows, cols)
        ctx.tiling, ctx.kept = tiling, kept
        return rows, cols

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows, grad_cols):
        a, b, rows, cols = ctx.saved_tensors
        kept, ctx.kept = ctx.kept, None  # overwritten below: a second backward recomputes
        with torch.autocast(a.device.type, enabled=False):
            grads = _clip_backward(
                a, b, rows, cols, grad_rows, grad_cols, ctx.tiling, kept, *_needs_grads(ctx)
            )
        return *grads, None, None


def _needs_grads(ctx) -> tuple[bool, bool]:
    return bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])


def clip_lse(
    a: torch.Tensor, b: torch.Tensor, positives: Positives | None, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column log-sum-exp of ``a @ b.T`` (float32 ``[N, d]`` each), leaving out the
    off-diagonal pairs ``positives`` marks; O(N·d + block²) memory, gradients by recomputation."""
    rows, cols = ClipLSE.apply(a, b, positives, block)
    return rows, cols


def _siglip_pass(a, b, bias, tiling: Tiling, need_a: bool, need_b: bool, need_bias: bool):
    """The summed loss and, where asked, its gradients: SigLIP's tiles need no statistics from
    other tiles, so one pass gives both (three matrix products per tile, as the naive loss)."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    grad_a = torch.zeros_like(a) if need_a else None
    grad_b = torch.zeros_like(b) if need_b else None
    grad_bias = torch.zeros((), dtype=torch.float64, device=a.device)
    for i, r, j, c in tiling.tiles():
        logits = torch.addmm(bias, a[r], b[c].T)
        # Matches: the diagonal (of diagonal tiles) and pairs sharing a group off it.
        shared = tiling.shared(i, j)
        signed = logits  # −log σ(z·logit) = softplus(−z·logit), z = +1 on matches, else −1
        if shared is not None:
            signed = torch.where(shared, -logits, logits)
        elif i == j:
            signed = logits.clone()
        if i == j:
            signed.diagonal().neg_()
        total += F.softplus(signed).sum(dtype=torch.float64)
        del signed
        if not (need_a or need_b or need_bias):
            continue
        g = logits.sigmoid_()  # ∂/∂logit = σ(logit) − [match]
        if shared is not None:
            g.sub_(shared.to(g.dtype))
        if i == j:
            g.diagonal().sub_(1.0)
        if need_bias:
            grad_bias += g.sum(dtype=torch.float64)
        if grad_a is not None:
            grad_a[r].addmm_(g, b[c])
        if grad_b is not None:
            grad_b[c].addmm_(g.T, a[r])
    return total.float(), grad_a, grad_b, grad_bias.float() if need_bias else None


class SigLipSum(torch.autograd.Function):
    """``Σ_ij softplus(−z_ij (a_i·b_j + bias))``, z = +1 on matches: exact, tiled; the
    gradients are accumulated in the same pass and scaled in backward."""

    @staticmethod
    def forward(ctx, a, b, bias, positives: Positives | None, block: int, grad_enabled: bool):
        tiling = Tiling(len(a), block, positives)
        needs = [grad_enabled and bool(n) for n in ctx.needs_input_grad[:3]]
        with torch.autocast(a.device.type, enabled=False):
            total, *grads = _siglip_pass(a, b, bias, tiling, *needs)
        ctx.grads = grads
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grad_a, grad_b, grad_bias = ctx.grads
        return (
            *(None if t is None else t * grad for t in (grad_a, grad_b, grad_bias)),
            None,
            None,
            None,
        )


def siglip_sum(
    a: torch.Tensor,
    b: torch.Tensor,
    bias: torch.Tensor,
    positives: Positives | None,
    block: int,
) -> torch.Tensor:
    """SigLIP's summed pair loss on ``a @ b.T + bias`` (float32), the diagonal and the pairs
    ``positives`` marks counted as matches; O(N·d + block²) memory."""
    # Under no_grad there is no backward: skip the gradients (needs_input_grad cannot tell).
    return SigLipSum.apply(a, b, bias, positives, block, torch.is_grad_enabled())

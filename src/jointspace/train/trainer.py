"""The Trainer: one loop for every objective, deterministic, resumable, checkpointed."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from jointspace.config import TrainConfig
from jointspace.data.collate import Batch, make_collate
from jointspace.data.dataset import PairedDataset
from jointspace.data.sampler import EpochBatchSampler, batches_per_epoch
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.io import save_model
from jointspace.models.joint import JointModel
from jointspace.objectives.masks import positive_pairs
from jointspace.train import checkpoint as ckpt
from jointspace.train.frozen import use_cached_features
from jointspace.train.logs import write_csv
from jointspace.train.optim import build_optimizer, lr_factor, set_lr

log = logging.getLogger("jointspace")
Evaluator = Callable[[JointModel], dict[str, float]]
Callback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a ``fit`` call did: per-step records, evaluations and the selected model."""

    out_dir: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "model"


class Trainer:
    """Trains ``model`` with ``objective``; writes ``out_dir/{model,checkpoints,metrics.jsonl}``.

    ``evaluator(model)`` returns metrics with a ``primary`` entry; the best one is kept in
    ``out_dir/model``. ``callbacks(step, record)`` run after every step. With a
    ``feature_cache``, frozen towers run once per input and later steps train only their heads.
    """

    def __init__(
        self,
        model: JointModel,
        objective: nn.Module,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        evaluator: Evaluator | None = None,
        callbacks: Sequence[Callback] = (),
        feature_cache: FeatureCache | None = None,
    ):
        self.model, self.objective, self.config = model, objective, config
        self.out_dir = Path(out_dir)
        self.evaluator, self.callbacks = evaluator, list(callbacks)
        self.feature_cache = feature_cache
        self.pooled: frozenset[str] = frozenset()
        self.device = torch.device(_pick_device(config.device))
        self.optimizer = build_optimizer([model, objective], config)
        self.checkpoints = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "metrics.jsonl"

    def fit(self, dataset: PairedDataset, *, resume: bool = False) -> TrainResult:
        """Train to the configured number of steps, from scratch or from the latest checkpoint."""
        cfg = self.config
        per_epoch = batches_per_epoch(len(dataset), cfg.batch_size)
        total = cfg.max_steps or cfg.epochs * per_epoch
        self.model.to(self.device)
        self.objective.to(self.device)
        self._num_rows = len(dataset)
        step, best = self._start(resume, total)
        result = TrainResult(self.out_dir, total, best=best)
        dataset, self.pooled = use_cached_features(self.model, dataset, self.feature_cache)
        collate = make_collate(
            {
                m: torch.stack if m in self.pooled else t.collate
                for m, t in self.model.towers.items()
            }
        )
        # disable=None: a live bar on a terminal, silence in CI logs and pipes.
        bar = tqdm(
            total=total,
            initial=step,
            desc="train",
            unit="step",
            disable=None if cfg.progress else True,
        )
        rng_at_step = torch.get_rng_state()
        try:
            while step < total:
                epoch, start_batch = divmod(step, per_epoch)
                dataset.set_epoch(epoch)
                for batch in self._loader(dataset, collate, epoch, start_batch):
                    record = self._train_step(batch.to(self.device), step, total)
                    step += 1
                    rng_at_step = torch.get_rng_state()
                    self._after_step(step, total, per_epoch, record, result, bar)
                    if step >= total:
                        break
        except BaseException:
            # Save the last completed step so --resume loses nothing, then let the error through.
            self._save_if_newer(step, total, result.best, rng_at_step)
            raise
        finally:
            bar.close()
            if self.log_path.exists():
                write_csv(self.log_path, self.log_path.with_suffix(".csv"))
        self._save_if_newer(step, total, result.best, rng_at_step)
        if self.evaluator is None:
            save_model(self.model, self.out_dir / "model")
        return result

    def _start(self, resume: bool, total: int) -> tuple[int, dict | None]:
        latest = ckpt.latest_checkpoint(self.checkpoints)
        if not resume:
            if latest is not None:
                raise FileExistsError(
                    f"{self.out_dir} already holds checkpoints: resume it (--resume) or choose "
                    "another output directory (--out)"
                )
            torch.manual_seed(self.config.seed)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.unlink(missing_ok=True)
            return 0, None
        if latest is None:
            raise FileNotFoundError(f"nothing to resume: no checkpoint in {self.checkpoints}")
        state, rng = ckpt.load_checkpoint(latest, self.model, self.objective, self.optimizer)
        if (state["num_rows"], state["total_steps"]) != (self._num_rows, total):
            raise ValueError(
                f"{latest} was made for {state['num_rows']} rows and {state['total_steps']} steps; "
                f"this run has {self._num_rows} rows and {total} steps: data or schedule changed"
            )
        torch.set_rng_state(rng)
        self._truncate_log(state["step"])
        log.info("resumed from %s at step %d", latest, state["step"])
        return state["step"], state["best"]

    def _loader(self, dataset: PairedDataset, collate, epoch: int, start_batch: int) -> DataLoader:
        sampler = EpochBatchSampler(
            len(dataset),
            self.config.batch_size,
            seed=self.config.seed,
            epoch=epoch,
            start_batch=start_batch,
        )
        # Its own generator: a DataLoader iterator otherwise draws its worker seed from the global
        # RNG, so resuming mid-epoch would shift the dropout stream.
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.config.num_workers,
            generator=generator,
        )

    def _train_step(self, batch: Batch, step: int, total: int) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        lr = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.min_lr_ratio)
        set_lr(self.optimizer, lr)
        started = time.perf_counter()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
            embeddings = self.model(batch.inputs, pooled=self.pooled)
            losses = self.objective(
                embeddings,
                logit_scale=self.model.logit_scale,
                positives=positive_pairs(batch.groups),
            )
        # A combined objective gives its weighted total as "loss"; otherwise sum the terms.
        loss = losses.get("loss", sum(v for k, v in losses.items() if k.endswith("_loss")))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}; lower the lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.optimizer.step()
        seconds = time.perf_counter() - started
        record = {k: float(v.detach()) for k, v in losses.items() if k != "loss"}
        return record | {
            "loss": float(loss.detach()),
            "lr": lr,
            "samples_per_s": len(batch) / seconds,
        }

    def _after_step(self, step, total, per_epoch, record, result, bar) -> None:
        cfg = self.config
        record = {"step": step, **record, "temperature": math.exp(-self.model.logit_scale.item())}
        result.history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.0f}")
        if step % cfg.log_every == 0 or step == total:
            self._log(record)
        eval_every = cfg.eval_every or per_epoch
        if self.evaluator is not None and (step % eval_every == 0 or step == total):
            self._evaluate(step, result)
        if step % cfg.checkpoint_every == 0:
            self._save_checkpoint(step, total, result.best, torch.get_rng_state())
        for callback in self.callbacks:
            callback(step, record)

    def _evaluate(self, step: int, result: TrainResult) -> None:
        metrics = self.evaluator(self.model)
        result.evals.append({"step": step, **metrics})
        self._log({"step": step, "eval": metrics})
        if result.best is None or metrics["primary"] > result.best["primary"]:
            result.best = {"step": step, "primary": metrics["primary"]}
            save_model(self.model, self.out_dir / "model")

    def _save_if_newer(self, step, total, best, rng) -> None:
        if step > _state_step(ckpt.latest_checkpoint(self.checkpoints)):
            self._save_checkpoint(step, total, best, rng)

    def _save_checkpoint(self, step, total, best, rng) -> None:
        state = {"step": step, "num_rows": self._num_rows, "total_steps": total, "best": best}
        ckpt.save_checkpoint(
            self.checkpoints, self.model, self.objective, self.optimizer, state, rng
        )
        ckpt.prune_checkpoints(self.checkpoints, self.config.keep_checkpoints)

    def _log(self, record: dict[str, Any]) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_log(self, step: int) -> None:
        # Lines written after the checkpoint would be repeated by the resumed run: drop them.
        if not self.log_path.exists():
            return
        lines = self.log_path.read_text().splitlines()
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        self.log_path.write_text("".join(f"{line}\n" for line in kept))


def _state_step(path: Path | None) -> int:
    return int(path.name.removeprefix(ckpt.PREFIX)) if path is not None else 0


def _pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name

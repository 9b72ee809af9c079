"""The Trainer: one loop for every objective, deterministic, resumable, checkpointed."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from jointspace.atomic import (
    recover_dir,
    remove_stale_temps,
)
from jointspace.config import ConfigError, TrainConfig
from jointspace.data.collate import Batch, make_collate
from jointspace.data.sampler import EpochBatchSampler
from jointspace.data.shard_dataset import ShardDataset
from jointspace.errors import ArtifactError, DiskFullError, JointspaceError, NotFoundError
from jointspace.models.feature_cache import FeatureCache
from jointspace.models.io import save_model
from jointspace.models.joint import JointModel
from jointspace.objectives.base import logit_init
from jointspace.progress import Progress
from jointspace.progress import logger as library_logger
from jointspace.train import checkpoint as ckpt
from jointspace.train.distributed import World
from jointspace.train.dropout import hide_cells
from jointspace.train.frozen import use_cached_features
from jointspace.train.frozen_ref import plan_frozen
from jointspace.train.loader import TrainData, epoch_batches, shard_loader
from jointspace.train.logs import RunLog
from jointspace.train.optim import build_optimizer, lr_factor, set_lr
from jointspace.train.precision import make_scaler, optimizer_step
from jointspace.train.step import forward_backward

log = logging.getLogger("jointspace")
RUN_FILES = {"model", "metrics.jsonl", "metrics.csv", "config.yaml", "mlflow_run.json"}  # in RUN
OLD_CHECKPOINT = re.compile(r"^\.step-\d{7}\.old$")
Evaluator = Callable[[JointModel], dict[str, float]]
Callback = Callable[[int, dict[str, float]], None]


class DivergedError(JointspaceError, FloatingPointError):
    """The loss became NaN or infinite: the settings (learning rate, data) need changing."""


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
    In a distributed ``world`` (train/distributed.py) rank 0 alone writes; all ranks train.
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
        world: World | None = None,
    ):
        self.model, self.objective, self.config = model, objective, config
        self.world = world or World()
        self.world.check_config(config)
        self.out_dir = Path(out_dir)
        self.evaluator, self.callbacks = evaluator, list(callbacks)
        self.feature_cache = feature_cache
        self.pooled: frozenset[str] = frozenset()
        self.device = self.world.device or torch.device(_pick_device(config.device))
        self.scaler = make_scaler(config.precision, self.device)  # fp16 off a GPU: refused here
        for tower in model.towers.values():
            tower.checkpoint_layers(config.activation_checkpointing)
        init = logit_init(objective)
        if init is not None and model.logit_bias is None:
            # SigLIP's bias belongs to the model (saved with it); it starts at the paper's values.
            model.add_logit_bias(init.bias, init.scale)
        self.optimizer = build_optimizer([model, objective], config)
        self.checkpoints = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "metrics.jsonl"
        self.run_log = RunLog(self.log_path)
        self._frozen: dict | None = None  # frozen weights checkpoints reference, not store

    def fit(self, dataset: TrainData, *, resume: bool = False) -> TrainResult:
        """Train to the configured number of steps, from scratch or from the latest checkpoint.

        Holds the run directory's lock throughout, and first removes temp files that a killed
        run left. With ``resume`` and more epochs (or steps) than the run recorded, training
        continues with the LR schedule recomputed for the new total.
        """
        library_logger()  # progress and warnings reach stderr unless the application says not
        with self.world.lock(self.out_dir):
            self.world.on_main(self._remove_leftovers)
            self.world.barrier()
            return self._fit(dataset, resume)

    def _fit(self, dataset: TrainData, resume: bool) -> TrainResult:
        cfg = self.config
        per_epoch = epoch_batches(dataset, cfg.batch_size)
        total = cfg.max_steps or cfg.epochs * per_epoch
        self.model.to(self.device)
        self.objective.to(self.device)
        self._num_rows = len(dataset)
        self._epochs = math.ceil(total / per_epoch)
        step, best = self._start(resume, total)
        result = TrainResult(self.out_dir, total, best=best)
        with self.world.local_main_first():  # the first process fills the feature cache
            dataset, self.pooled = use_cached_features(self.model, dataset, self.feature_cache)
        self.net = self.world.wrap(self.model, chunked=cfg.grad_cache_chunk is not None)
        collate = make_collate(
            {
                m: torch.stack if m in self.pooled else t.collate
                for m, t in self.model.towers.items()
            }
        )
        shown = cfg.progress and self.world.is_main
        progress = Progress(total, step, "train", enabled=shown, every=cfg.log_every)
        rng_at_step = torch.get_rng_state()
        failed = True
        try:
            self.world.on_main(self.run_log.track, cfg.log_to, resumed=step > 0, train=cfg)
            with progress.active():
                while step < total:
                    epoch, start_batch = divmod(step, per_epoch)
                    dataset.set_epoch(epoch)
                    started, first = time.perf_counter(), len(result.history)
                    for batch in self._loader(dataset, collate, epoch, start_batch):
                        record = self._train_step(batch.to(self.device), step, total)
                        step += 1
                        rng_at_step = torch.get_rng_state()
                        self._after_step(step, total, per_epoch, record, result, progress)
                        if step >= total:
                            break
                    losses = [r["loss"] for r in result.history[first:]]
                    progress.info(
                        "epoch %d/%d done: step %d/%d, mean loss %.4f, %.1f s",
                        epoch + 1,
                        self._epochs,
                        step,
                        total,
                        sum(losses) / max(1, len(losses)),
                        time.perf_counter() - started,
                    )
            failed = False
        except BaseException as err:
            # Save the last completed step so --resume loses nothing, then let the error through
            # (not after a full disk: that save would fail the same way; not across ranks, which
            # may be gone: a distributed run resumes from its last periodic checkpoint).
            if not isinstance(err, DiskFullError) and not self.world.distributed:
                self._save_if_newer(step, total, result.best, rng_at_step, quiet=True)
            raise
        finally:
            self.world.on_main(self.run_log.close, quiet=failed)
        self._save_if_newer(step, total, result.best, rng_at_step)
        if self.evaluator is None:
            self.world.on_main(save_model, self.model, self.out_dir / "model")
        self.world.barrier()
        return result

    def _remove_leftovers(self) -> None:
        # A kill mid-write leaves temp entries (only ours: see atomic.TEMP_NAME) and, between
        # the two renames of atomic_dir, `.NAME.old` holding the previous version.
        recover_dir(self.out_dir / "model")
        if self.checkpoints.is_dir():
            for entry in self.checkpoints.iterdir():
                if OLD_CHECKPOINT.match(entry.name):
                    recover_dir(self.checkpoints / entry.name[1:-4])
        # Only what training writes: `report`, say, may be writing beside it right now.
        removed = remove_stale_temps(self.out_dir, RUN_FILES.__contains__)
        removed += remove_stale_temps(self.checkpoints, ckpt.NAME.match)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run", len(removed))

    def _start(self, resume: bool, total: int) -> tuple[int, dict | None]:
        found = ckpt.list_checkpoints(self.checkpoints)
        if not resume:
            set_aside = self.checkpoints.is_dir() and any(
                p.name.startswith(ckpt.DAMAGED_PREFIX) for p in self.checkpoints.iterdir()
            )
            if found or set_aside:
                raise FileExistsError(
                    f"{self.out_dir} already holds checkpoints: resume it (--resume) or choose "
                    "another output directory (--out)"
                )
            self.world.seed(self.config.seed)
            if self.world.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self.log_path.unlink(missing_ok=True)
            return 0, None
        path, state, rng = self._load_newest_intact(found)
        if state["num_rows"] != self._num_rows:
            raise ConfigError(
                f"{path} was made for {state['num_rows']} training rows; this run has "
                f"{self._num_rows}: the data changed, so it cannot be resumed"
            )
        if state["step"] > total:
            raise ConfigError(
                f"{path} is at step {state['step']}, past the {total} steps asked for now: "
                "ask for at least as many epochs (or max_steps) as the run already trained"
            )
        if state["total_steps"] != total:
            log.info(
                "extending the run from %d to %d steps: the LR schedule is recomputed for %d",
                state["total_steps"],
                total,
                total,
            )
        self.world.restore_rng(rng, self.config.seed, state["step"])
        self.world.on_main(self.run_log.truncate, state["step"])
        log.info("resumed from %s at step %d", path, state["step"])
        return state["step"], state["best"]

    def _load_newest_intact(self, found: list[Path]) -> tuple[Path, dict, torch.Tensor | None]:
        # A damaged newer checkpoint (truncated file, broken JSON, NaN) is set aside, not lost.
        for index in range(len(found) - 1, -1, -1):
            path = found[index]
            try:
                ckpt.check_checkpoint(path)
                state, rng = ckpt.load_checkpoint(
                    path,
                    self.model,
                    self.objective,
                    self.optimizer,
                    self.scaler,
                    rank=self.world.rank,
                )
            except ckpt.FrozenSourceChanged:
                raise
            except ArtifactError as err:
                ckpt.warn_damaged(path, err)
                continue
            for damaged in found[index + 1 :] if self.world.is_main else ():
                log.warning("set aside damaged checkpoint as %s", ckpt.set_aside(damaged).name)
            return path, state, rng
        if found:
            raise ArtifactError(f"every checkpoint in {self.checkpoints} is damaged; see above")
        raise NotFoundError(f"nothing to resume: no checkpoint in {self.checkpoints}")

    def _loader(self, dataset: TrainData, collate, epoch: int, start_batch: int) -> DataLoader:
        if isinstance(dataset, ShardDataset):
            return shard_loader(dataset, collate, self.config, epoch, start_batch)
        sampler = EpochBatchSampler(  # the global batch; each rank loads its own slice
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
            batch_sampler=self.world.shard(sampler),
            collate_fn=collate,
            num_workers=self.config.num_workers,
            generator=generator,
        )

    def _train_step(self, batch: Batch, step: int, total: int) -> dict[str, float]:
        cfg = self.config
        batch = hide_cells(batch, cfg.modality_dropout, cfg.seed, step)
        self.model.train()
        lr = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.min_lr_ratio)
        set_lr(self.optimizer, lr)
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        hooks: dict[str, Any] = {"net": self.net, "gather": self.world.gather}  # DDP, global batch
        losses = forward_backward(
            self.model,
            self.objective,
            batch,
            pooled=self.pooled,
            precision=cfg.precision,
            grad_cache_chunk=cfg.grad_cache_chunk,
            scaler=self.scaler,
            **hooks,
        )
        loss = losses.pop("loss")
        if not torch.isfinite(loss):
            raise DivergedError(f"loss became {loss.item()} at step {step + 1}; lower the lr")
        optimizer_step(self.optimizer, cfg.grad_clip, self.scaler)
        seconds = time.perf_counter() - started
        record = {k: float(v.detach()) for k, v in losses.items()}
        return record | {
            "loss": float(loss.detach()),
            "lr": lr,
            "samples_per_s": len(batch) * self.world.world_size / seconds,
        }

    def _after_step(self, step, total, per_epoch, record, result, progress) -> None:
        cfg = self.config
        scale = self.model.logit_scale.item()
        if not abs(scale) < 700:  # exp(-scale) would overflow: the temperature ran away
            raise DivergedError(f"the temperature diverged at step {step}; lower the lr")
        # The objective reports the temperature (and bias) it applied, e.g. after CLIP's clamp.
        record = {"step": step, **record}
        result.history.append(record)
        progress.update(
            step,
            {
                "loss": f"{record['loss']:.4f}",
                "lr": f"{record['lr']:.2e}",
                "samples/s": f"{record['samples_per_s']:.0f}",
            },
        )
        if (step % cfg.log_every == 0 or step == total) and self.world.is_main:
            self.run_log.append(record)
        eval_every = cfg.eval_every or per_epoch
        if self.evaluator is not None and (step % eval_every == 0 or step == total):
            self._evaluate(step, per_epoch, result, progress)
        if step % cfg.checkpoint_every == 0:
            self._save_checkpoint(step, total, result.best, torch.get_rng_state())
        for callback in self.callbacks:
            callback(step, record)

    def _evaluate(self, step: int, per_epoch: int, result: TrainResult, progress) -> None:
        # Rank 0 evaluates and saves; the others wait for the metrics that decide the best.
        metrics = self.world.broadcast(self.evaluator(self.model) if self.world.is_main else None)
        result.evals.append({"step": step, **metrics})
        self.world.on_main(self.run_log.append, {"step": step, "eval": metrics})
        improved = result.best is None or metrics["primary"] > result.best["primary"]
        shown = [f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith("R@1")][:4]
        progress.info(
            "eval at step %d (epoch %.1f): primary %.4f%s  %s",
            step,
            step / per_epoch,
            metrics["primary"],
            " (best so far, saved)" if improved else "",
            "  ".join(shown),
        )
        if improved:
            result.best = {"step": step, "primary": metrics["primary"]}
            self.world.on_main(save_model, self.model, self.out_dir / "model")

    def _save_if_newer(self, step, total, best, rng, *, quiet: bool = False) -> None:
        newest = ckpt.list_checkpoints(self.checkpoints)
        if step > (_state_step(newest[-1]) if newest else 0):
            try:
                self._save_checkpoint(step, total, best, rng)
            except (OSError, JointspaceError) as err:
                if not quiet:
                    raise
                log.warning("could not save a checkpoint at step %d: %s", step, err)

    def _save_checkpoint(self, step, total, best, rng) -> None:
        state = {
            "step": step,
            "num_rows": self._num_rows,
            "total_steps": total,
            "epochs": self._epochs,
            "best": best,
            **ckpt.scaler_state(self.scaler),
        }
        if self._frozen is None:
            self._frozen = plan_frozen(self.model)
        rngs = self.world.rng_states(rng)  # every rank's dropout stream resumes where it was
        saved = (self.model, self.objective, self.optimizer, state, rngs, self._frozen)
        self.world.on_main(ckpt.save_checkpoint, self.checkpoints, *saved)
        self.world.on_main(ckpt.prune_checkpoints, self.checkpoints, self.config.keep_checkpoints)
        self.world.barrier()


def _state_step(path: Path | None) -> int:
    return int(path.name.removeprefix(ckpt.PREFIX)) if path is not None else 0


def _pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name

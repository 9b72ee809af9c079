"""LabelledSet: one split of labelled rows as a classifier sees it; unique inputs encoded once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from jointspace.classifier.config import ClassifyConfig
from jointspace.data import Manifest, ManifestError, load_manifest
from jointspace.data.manifest import quote
from jointspace.models.embedding import item_inputs
from jointspace.models.inference import batches
from jointspace.models.joint import JointModel
from jointspace.models.modes import evaluating
from jointspace.models.tokens import Tokens, pad_tokens, trim_tokens
from jointspace.progress import logger

SPLITS = ("train", "val", "test")


@dataclass
class LabelledSet:
    """Rows of one split: labels (indices into ``classes``), ids, groups, and per modality the
    token states of the unique inputs (``tokens``) with each row's index into them (``index``)."""

    classes: list[str]
    labels: torch.Tensor  # [N] long
    ids: list[str]
    groups: list[str] | None
    tokens: dict[str, Tokens]  # modality → (states [U, T, d], keep [U, T]) of unique inputs
    index: dict[str, torch.Tensor]  # modality → [N] long: row → unique input
    # modality → the unique raw inputs (text, file paths) behind ``tokens``, in the same order
    raw: dict[str, list[Any]] = field(default_factory=dict)
    # modality → [N] bool, False where the row's cell is empty (absent); a modality not named
    # here is present in every row. An absent row's ``index`` points at some other input.
    present: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.tokens)

    @property
    def dims(self) -> dict[str, int]:
        """Each modality's token width, what a fusion head is built for."""
        return {m: int(states.shape[2]) for m, (states, _) in self.tokens.items()}

    def absent(self, rows: torch.Tensor) -> torch.Tensor:
        """``[len(rows), M]`` bool (M: ``modalities`` in order), True where a cell is absent."""
        none = torch.zeros(len(rows), dtype=torch.bool)
        columns = [~self.present[m][rows] if m in self.present else none for m in self.modalities]
        return torch.stack(columns, dim=1)

    def inputs(
        self, rows: torch.Tensor, drop: set[str] | frozenset[str] | None = None
    ) -> dict[str, Tokens]:
        """``{modality: (states, keep)}`` of ``rows`` for a head, without the modalities in
        ``drop`` (treated as missing); columns that are padding in every row are cut."""
        out = {}
        for m in self.modalities:
            if drop and m in drop:
                continue
            states, keep = self.tokens[m]
            where = self.index[m][rows]
            out[m] = trim_tokens(states[where], keep[where])
        return out


def reencode(data: LabelledSet, model: JointModel, mode: str, batch_size: int = 64) -> LabelledSet:
    """``data`` with its rows' unique inputs encoded again by ``model`` (fine-tuned towers)."""
    tokens, index, raw = {}, {}, {}
    for m in data.modalities:
        used, where = torch.unique(data.index[m], return_inverse=True)
        raw[m] = [data.raw[m][j] for j in used.tolist()]
        tokens[m] = encode_raw(model, m, raw[m], mode, batch_size)
        index[m] = where
    return replace(data, tokens=tokens, index=index, raw=raw)


def encode_raw(
    model: JointModel, modality: str, raws: Sequence[Any], mode: str, batch_size: int = 64
) -> Tokens:
    """Token states of raw inputs (``mode`` tokens), or their pooled features as one token."""
    if mode == "tokens":
        return model.encode_tokens(raws, modality, batch_size=batch_size)
    tower = model.tower(modality)
    device = next(model.parameters()).device
    chunks = []
    with evaluating(model), torch.no_grad():
        for _, x in batches(tower, list(raws), batch_size, bucket=False):
            chunks.append(tower.pooled(x.to(device)).float().cpu())
    if not chunks:
        raise ManifestError(f"no {modality} inputs to encode")
    states = torch.cat(chunks).unsqueeze(1)
    return pad_tokens([(states, torch.ones(states.shape[:2], dtype=torch.bool))])


def labelled_sets(
    config: ClassifyConfig, model: JointModel, *, data: str | Path | None = None
) -> dict[str, LabelledSet]:
    """The train, val and test splits ``config.data`` names (val/test when set), encoded by
    ``model``: each unique input of each modality once, shared by every split."""
    spec = config.data
    manifest = load_manifest(data or spec.manifest, spec.modalities, skip_bad=spec.skip_bad)
    labels, groups = _labels(manifest, spec.label_column, spec.group_column, spec.skip_bad)
    named = {"train": spec.train_split, "val": spec.val_split, "test": spec.test_split}
    rows = {k: _split_rows(manifest, k, s, labels) for k, s in named.items() if s is not None}
    classes = sorted({labels[i] for i in rows["train"]})
    for key, found in rows.items():
        _check_classes(manifest, named[key], [labels[i] for i in found], classes)
    used = sorted({i for found in rows.values() for i in found})
    tables, raws = {}, {}
    present = {m: [manifest.has(i, m) for i in range(len(manifest.rows))] for m in spec.modalities}
    for m in spec.modalities:
        values = list(dict.fromkeys(manifest.rows[i][m] for i in used if present[m][i]))
        if not values:
            raise ManifestError(
                f"{manifest.path}: column {quote(m)} is empty in every row of the splits used "
                f"({', '.join(str(named[k]) for k in rows)}); drop {m!r} from data.modalities"
            )
        where = {v: j for j, v in enumerate(values)}
        absent = sum(1 for i in used if not present[m][i])
        if absent:
            logger().info("classify: %d rows have no %s (classified without it)", absent, m)
        logger().info("classify: encoding %d unique %s inputs", len(values), m)
        inputs = item_inputs(manifest, m, values)
        tables[m] = (
            encode_raw(model, m, inputs, config.towers.inputs, config.towers.batch_size),
            where,
        )
        raws[m] = inputs
    position = {c: i for i, c in enumerate(classes)}
    out = {}
    for key, found in rows.items():
        out[key] = LabelledSet(
            classes=classes,
            labels=torch.tensor([position[labels[i]] for i in found], dtype=torch.long),
            ids=[manifest.rows[i]["id"] for i in found],
            groups=None if groups is None else [groups[i] for i in found],
            tokens={m: table for m, (table, _) in tables.items()},
            index={
                m: torch.tensor(
                    [where[manifest.rows[i][m]] if present[m][i] else 0 for i in found],
                    dtype=torch.long,
                )
                for m, (_, where) in tables.items()
            },
            raw=raws,
            present={
                m: torch.tensor([present[m][i] for i in found], dtype=torch.bool)
                for m in spec.modalities
                if not all(present[m][i] for i in found)
            },
        )
    return out


def _row_numbers(manifest: Manifest) -> list[int]:
    """Each kept row's 1-based number in the file (rows skipped as bad leave gaps)."""
    bad = {p.row for p in manifest.skipped}
    numbers, n = [], 0
    for _ in manifest.rows:
        n += 1
        while n in bad:
            n += 1
        numbers.append(n)
    return numbers


def _labels(
    manifest: Manifest, column: str, group_column: str | None, skip_bad: bool
) -> tuple[list[str], list[str] | None]:
    for name, key in ((column, "data.label_column"), (group_column, "data.group_column")):
        if name is not None and name not in manifest.columns:
            raise ManifestError(
                f"{manifest.path}: no {key} column {quote(name)} "
                f"(columns: {', '.join(manifest.columns)})"
            )
    numbers = _row_numbers(manifest)
    empty = [i for i, row in enumerate(manifest.rows) if not row[column].strip()]
    if empty and not skip_bad:
        first = empty[0]
        more = f" (and {len(empty) - 1} more rows)" if len(empty) > 1 else ""
        raise ManifestError(
            f"{manifest.path}, row {numbers[first]}, column {quote(column)}: empty label "
            f"(id {quote(manifest.rows[first]['id'])}){more}; fill it in, or pass --skip-bad "
            "(data.skip_bad) to leave such rows out"
        )
    if empty:
        for i in empty:
            logger().warning(
                "skipping %s, row %d, column %s: empty label", manifest.path, numbers[i], column
            )
        gone = set(empty)
        manifest.rows = [row for i, row in enumerate(manifest.rows) if i not in gone]
        if not manifest.rows:
            raise ManifestError(f"{manifest.path}: every row's label is empty")
    labels = [row[column].strip() for row in manifest.rows]
    groups = None if group_column is None else [row[group_column] for row in manifest.rows]
    return labels, groups


def _split_rows(manifest: Manifest, key: str, name: str, labels: list[str]) -> list[int]:
    if "split" not in manifest.columns:
        raise ManifestError(
            f"{manifest.path}: no 'split' column, so no {key} split {quote(name)}; add one, "
            f"or set data.{key}_split to null (the train split cannot be)"
        )
    found = [i for i, row in enumerate(manifest.rows) if row["split"] == name]
    if not found:
        hint = "" if key == "train" else f", or set data.{key}_split: null to go without"
        raise ManifestError(
            f"{manifest.path}: no rows in the {key} split {quote(name)} "
            f"(splits: {', '.join(manifest.splits())}){hint}"
        )
    return found


def _check_classes(manifest: Manifest, split: str | None, labels: list[str], classes: list[str]):
    known = set(classes)
    unseen: dict[str, int] = {}
    for label in labels:
        if label not in known:
            unseen[label] = unseen.get(label, 0) + 1
    if unseen:
        label, count = next(iter(unseen.items()))
        others = f" ({len(unseen) - 1} more unseen classes)" if len(unseen) > 1 else ""
        raise ManifestError(
            f"{manifest.path}: class {quote(label)} appears in {count} row(s) of split "
            f"{quote(split or '')} but never in the train split{others}; a classifier cannot "
            "learn it: add training rows with that label, or filter those rows out"
        )

"""Programs over the parts: a trained run (``Run``) and what is done with one.

``Run`` (run.py) owns a run's config, model, fingerprint, data, matcher and index; ``fit``
trains one, ``train_matcher`` adds its second stage, ``compare`` trains one per objective,
the demo runs everything end to end, ``export_embeddings`` writes vectors to Parquet.
Names load on first use, so the CLI can import ``runs.outputs`` without torch. ``fit`` and
``compare`` are imported from their modules (``runs.fit``, ``runs.compare``), which share their
names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jointspace._lazy import lazy_exports

_LAZY = {
    "Run": "jointspace.runs.run",
    "load": "jointspace.runs.run",
    "resume_config": "jointspace.runs.resume",
    "train_matcher": "jointspace.runs.matcher",
    "plan_demo": "jointspace.runs.demo",
    "run_demo": "jointspace.runs.demo",
    "export_embeddings": "jointspace.runs.export",
    "search_manifest": "jointspace.runs.search",
}

__all__ = [
    "Run",
    "export_embeddings",
    "load",
    "plan_demo",
    "resume_config",
    "run_demo",
    "search_manifest",
    "train_matcher",
]

if TYPE_CHECKING:
    from jointspace.runs.demo import plan_demo, run_demo
    from jointspace.runs.export import export_embeddings
    from jointspace.runs.matcher import train_matcher
    from jointspace.runs.resume import resume_config
    from jointspace.runs.run import Run, load
    from jointspace.runs.search import search_manifest


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

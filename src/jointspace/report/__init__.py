"""Reports: metrics, figures and failures of a model on a manifest, as HTML + JSON."""

from jointspace.report.build import build_report

__all__ = ["build_report"]

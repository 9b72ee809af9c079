"""The search service: REST API and a web page over a model and an index."""

from jointspace.serve.app import create_app

__all__ = ["create_app"]

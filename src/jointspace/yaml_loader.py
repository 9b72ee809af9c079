"""The one YAML reader for configs: PyYAML's safe loader with YAML 1.2 numbers."""

from __future__ import annotations

import re
from typing import Any

import yaml

# YAML 1.2 (core schema) floats: an exponent needs no dot. PyYAML follows YAML 1.1, where
# `2e-3` or `1e5` are strings, though every learning rate in the PyTorch world is written so.
FLOAT_12 = re.compile(
    r"""^[-+]?(?:
        [0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
      | \.[0-9_]+[eE][-+]?[0-9]+
    )$""",
    re.X,
)


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``2e-3``, ``1E5``, ``-1e-4`` as floats."""


YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_12, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Plain data from YAML ``text`` (raises ``yaml.YAMLError`` as ``yaml.safe_load`` does)."""
    return yaml.load(text, Loader=YamlLoader)  # a SafeLoader subclass: safe

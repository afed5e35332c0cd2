"""Data shipped inside the package: platform presets (``platforms.csv``) and workloads (``workloads/``).

Each file says where its figures come from (README.md beside it). They are package data, so an installed wheel
has them wherever it is installed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["data_dir"]


def data_dir() -> Path:
    """The folder holding ``platforms.csv`` and ``workloads/``."""
    return Path(str(resources.files(__name__)))

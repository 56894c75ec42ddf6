"""Temporary: check_experiment moves here from config (being done)."""

from nnlab.config import check_experiment

__all__ = ["check_experiment"]

"""Shared fixtures. Heavy ones (the generated XTTS checkpoint) are built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep tests off the user's real caches and off the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def xtts_dir(tmp_path_factory) -> Path:
    """A tiny XTTS v2 checkpoint in the release layout, generated from coqui's own classes.

    Random weights: it exercises every code path (loading, conditioning, GPT, HiFiGAN) but its
    audio is noise. ~90 MB because HiFiGAN has a fixed size; never committed.
    """
    from components.xtts.synthetic import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("xtts-tiny"), preset="tiny", seed=0)


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """A fresh results root for one test."""
    d = tmp_path / "results"
    d.mkdir()
    return d

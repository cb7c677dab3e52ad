"""Shared fixtures: the real embedded model, loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PATCHGRADE_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def model():
    from reference.models import load_model

    torch.set_grad_enabled(False)
    return load_model("embedded", device="cpu")

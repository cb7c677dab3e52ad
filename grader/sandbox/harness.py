"""What a student's functions can rely on without defining it: the lab's imports and its given
helpers (lab code, copied from the lab, not the reference), plus `model`, `n_layers`, `n_heads`.
The student's own definitions are executed after this, so theirs win."""

from __future__ import annotations

IMPORTS = """
import torch
import numpy as np
import gc
import random
from typing import List, Dict, Optional, Tuple, Callable
from dataclasses import dataclass
from functools import partial
from transformer_lens import HookedTransformer, utils
from transformer_lens.hook_points import HookPoint
"""

# Given in the lab (Parts 1-3); provided unless the assignment grades them.
GIVEN = {
    "IOIExample": '''
@dataclass
class IOIExample:
    """A single IOI example with clean and corrupted versions."""
    clean: str
    corrupted: str
    answer: str
    wrong_answer: str
''',
    "compute_logit_diff": '''
def compute_logit_diff(logits, answer_token, wrong_token, position=-1):
    return (logits[0, position, answer_token] - logits[0, position, wrong_token]).item()
''',
    "compute_patching_effect": '''
def compute_patching_effect(clean_logit_diff, corrupted_logit_diff, patched_logit_diff):
    return (clean_logit_diff - patched_logit_diff) / (clean_logit_diff - corrupted_logit_diff + 1e-10)
''',
}


def preamble(graded: set[str]) -> str:
    """Source run before the submission: imports and the given helpers not being graded."""
    return IMPORTS + "".join(src for name, src in GIVEN.items() if name not in graded)


# Modules lab notebooks import. Loaded by a worker before any student code (and by the zygote
# before it forks), so a submission's own `import plotly.express as px` costs nothing.
PRELOAD = ("numpy", "pandas", "einops", "matplotlib", "matplotlib.pyplot", "plotly.express",
           "plotly.graph_objects", "plotly.subplots", "transformer_lens.hook_points")


def preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional library that is missing stays missing
            pass

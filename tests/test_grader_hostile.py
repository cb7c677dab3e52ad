"""Hostile submissions are contained: each attack costs at most its own check, the grader process
survives, other checks still pass, and the report says what happened. Bounded attacks only: the
process burst stops at 200 forks, the flood at 100 MB."""

from __future__ import annotations

import subprocess
import time

import pytest

from grader.config import AssignmentConfig
from grader.pipeline import grade_notebook, prepare
from grader.sandbox.isolation import landlock_abi
from tests.grading_helpers import by_number, notebook

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="needs Landlock signal scoping (Linux 6.12+)")


@pytest.fixture(scope="module")
def ref(model):
    return prepare("embedded", AssignmentConfig(timeout_scale=0.5), model=model)


def _hostile(secret_path: str) -> str:
    return f'''
import os, socket, sys, time
import numpy as np
import torch

def patch_mlp_layer(model, clean_tokens, corrupted_cache, layer):
    socket.create_connection(("127.0.0.1", 80), timeout=2)   # the network

def find_name_positions(model, example):
    return {{"IO": len(open({secret_path!r}).read())}}           # another submission

def patch_residual_at_positions(model, clean_tokens, corrupted_cache, layer, positions):
    os._exit(3)

def compute_position_patching_effects(model, example):
    os.kill(os.getppid(), 9)                                    # kill the grader

def get_end_attention(cache, layer, head, positions):
    for _ in range(200):                                        # a burst of processes
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)

def compute_name_mover_scores(model, dataset, heads, n_samples=20):
    hog = torch.ones(8_000_000_000)                             # a 32 GB memory bomb
    return hog

def path_patch_head_to_final_resid(model, clean_tokens, clean_cache, corrupted_cache, layer, head):
    for _ in range(100):                                        # 100 MB of output
        print("x" * 1_000_000)

class Liar:
    def __eq__(self, other): return True
    def __array__(self, *args, **kwargs): return np.zeros((3, 4))

def compute_path_patching_effects(model, dataset, n_samples=10):
    return Liar()

def compute_mlp_patching_effects(model, dataset, n_samples=20):
    np.allclose = np.isclose = lambda *a, **k: True             # monkeypatch the checkers
    np.testing.assert_allclose = lambda *a, **k: None
    torch.allclose = lambda *a, **k: True
    torch.Tensor.__eq__ = lambda *a, **k: True
    return np.zeros(model.cfg.n_layers)
'''


def _ps_count() -> int:
    return len(subprocess.run(["ps", "-e", "-o", "pid="], capture_output=True, text=True).stdout.split())


def test_hostile_code_is_contained_and_reported(ref, tmp_path):
    secret = tmp_path / "other_student.ipynb"
    secret.write_text("another student's work")
    before = _ps_count()
    result = grade_notebook(notebook(tmp_path / "hostile.ipynb", [_hostile(str(secret))]), ref)
    t = by_number(result)

    assert t["1.1"].reason == "exception" and ("unreachable" in t["1.1"].output or "ermission" in t["1.1"].output)
    assert t["2.1"].reason == "exception" and "PermissionError" in t["2.1"].output
    assert t["2.3"].reason == "crashed" and "exited with status 3" in t["2.3"].output
    assert t["2.5"].reason == "exception" and "PermissionError" in t["2.5"].output  # the parent lives
    assert t["3.1"].reason == "exception" and "BlockingIOError" in t["3.1"].output  # pids.max stops it
    assert t["3.3"].reason in ("exception", "crashed")                               # memory limit
    assert t["4.1"].status == "failed"                                               # the flood
    assert t["4.3"].reason == "wrong type"                                           # the liar
    assert t["1.3"].reason == "values differ"          # monkeypatching cannot reach our comparison
    assert t["1.4"].status == "failed"
    assert result.provenance["worker_restarts"] >= 1
    for _ in range(50):  # the forked sleepers die with the worker's cgroup (reaping takes a moment)
        if _ps_count() <= before + 2:
            break
        time.sleep(0.2)
    assert _ps_count() <= before + 2


def test_side_effects_fail_the_check_and_are_undone(ref, tmp_path):
    cells = ['''
def patch_mlp_layer(model, clean_tokens, corrupted_cache, layer):
    model.add_hook(f"blocks.{layer}.hook_mlp_out", lambda a, hook: corrupted_cache[hook.name])
    return model(clean_tokens)              # right logits, hook left behind

def get_end_attention(cache, layer, head, positions):
    pattern = cache["pattern", layer]
    value = {k: pattern[0, head, positions["END"], positions[k]].item() for k in ("IO", "S1", "S2")}
    pattern.zero_()                         # right values, cache destroyed
    return value

def path_patch_head_to_final_resid(model, clean_tokens, clean_cache, corrupted_cache, layer, head):
    model.blocks[0].attn.W_O.data += 1.0    # writes into the weights
    return model(clean_tokens)
''']
    result = grade_notebook(notebook(tmp_path / "side_effects.ipynb", cells), ref)
    t = by_number(result)
    assert t["1.1"].reason == "side effect" and "hooks were left attached" in t["1.1"].output
    assert t["3.1"].reason == "side effect" and "modified in place" in t["3.1"].output
    assert t["4.1"].reason == "side effect" and "weights were modified" in t["4.1"].output
    # Functions built on the offenders inherit the violation...
    assert t["1.3"].reason in ("exception", "side effect")  # hooks pile up inside its own loop
    assert t["1.4"].reason == "side effect" and t["4.3"].reason == "side effect"
    # ...but the model is restored after each call, so checks of other functions still pass.
    assert all(t[n].status == "passed" for n in ("2.1", "2.5", "3.3")), \
        {n: t[n].output for n in ("2.1", "2.5", "3.3")}


def test_a_hang_costs_only_its_check(ref, tmp_path):
    cells = ["def find_name_positions(model, example):\n    while True:\n        pass\n"]
    result = grade_notebook(notebook(tmp_path / "hang.ipynb", cells), ref)
    t = by_number(result)
    assert t["2.1"].reason == "timeout" and t["2.2"].reason == "timeout"
    assert "stopped after" in t["2.1"].output
    assert all(x.status == "passed" for x in result.tests if x.function != "find_name_positions"
               and x.function != "compute_name_mover_scores")


def test_top_level_code_that_kills_the_worker_is_skipped(ref, tmp_path):
    cells = ["import os\nn_layers_from_helper = os._exit(1)\n",
             "def patch_mlp_layer(model, clean_tokens, corrupted_cache, layer):\n"
             "    _ = n_layers_from_helper\n    return model(clean_tokens)\n"]
    result = grade_notebook(notebook(tmp_path / "exit_at_load.ipynb", cells), ref)
    assert any("ended the sandbox" in p for p in result.problems)
    t = by_number(result)
    assert t["1.1"].reason == "exception" and "NameError" in t["1.1"].output
    assert t["2.1"].status == "passed"

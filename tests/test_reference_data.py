"""IOI data: the lab's generator reproduced exactly, the held-out generator, name positions."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest

from reference import data
from tests.conftest import SHARED


def _lab_namespace() -> dict:
    """Execute the lab's own dataset cell, taken from the lab file in shared/."""
    text = (SHARED / "lab" / "lab_c2_activation_patching_ioi.md").read_text()
    cells = re.split(r"\nIn \[None\]:\n", text)
    source = next(c for c in cells if "def create_ioi_dataset" in c)
    source = source.split("\n# Create dataset")[0]
    ns: dict = {}
    exec("from dataclasses import dataclass\nfrom typing import List\nimport random\n" + source, ns)
    return ns


@pytest.mark.parametrize("seed,n", [(42, 100), (0, 7), (123, 50)])
def test_create_ioi_dataset_is_the_labs(seed, n):
    lab = _lab_namespace()["create_ioi_dataset"](n_samples=n, seed=seed)
    ours = data.create_ioi_dataset(n_samples=n, seed=seed)
    assert [asdict(e) for e in ours] == [vars(e) for e in lab]


def test_heldout_dataset_varies_names_orders_templates_and_seeds():
    ds = data.make_heldout_dataset(60, seed=3)
    assert ds == data.make_heldout_dataset(60, seed=3)
    assert ds != data.make_heldout_dataset(60, seed=4)
    names = {e.answer.strip() for e in ds} | {e.wrong_answer.strip() for e in ds}
    assert names <= set(data.EXTRA_NAMES) and not names & set(data.LAB_NAMES)
    firsts = [e.clean.split(" and ")[0].split()[-1] for e in ds]
    abba = sum(f == e.answer.strip() for f, e in zip(firsts, ds))
    assert 0 < abba < len(ds)  # both name orders
    assert len({e.clean.split(".")[0] for e in ds}) > 10


def test_name_positions_on_lab_prompt(model):
    ex = data.create_ioi_dataset(1)[0]
    pos = data.name_positions(model, ex)
    tokens = model.to_str_tokens(ex.clean)
    assert tokens[pos["S1"]].strip() == tokens[pos["S2"]].strip() == ex.wrong_answer.strip()
    assert tokens[pos["IO"]] == ex.answer
    assert pos["END"] == len(tokens) - 1 and pos["S1"] < pos["S2"]
    assert tokens[0] == model.tokenizer.bos_token


def test_name_positions_rejects_a_prompt_without_a_repeated_subject(model):
    ex = data.IOIExample("Mary and John went out. Kate gave a book to", "", " Mary", " John")
    with pytest.raises(data.PositionError, match="subject 'John'"):
        data.name_positions(model, ex)

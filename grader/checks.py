"""The checks of the shipped assignment, declared as data, and the hidden inputs they run on.

A check names a graded function, a label, its points, a recipe (the inputs, as plain JSON) and a
tolerance. Hidden inputs differ from the notebook's: held-out names and templates, prefixes so
positions move, both name orders, a fixed grading seed, and for dataset averages an example the
model gets wrong plus `n_samples` smaller than the list, so the averaging rule matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from reference import data

SECTIONS = ("exercise_1", "exercise_2", "exercise_3", "challenge", "given")
SECTION_TITLES = {"exercise_1": "Exercise 1: MLP patching", "exercise_2": "Exercise 2: position-specific patching",
                  "exercise_3": "Exercise 3: attention pattern analysis", "challenge": "Challenge: path patching",
                  "given": "Given lab functions"}


@dataclass(frozen=True)
class CheckSpec:
    section: str
    function: str
    label: str
    points: float
    recipe: Callable[["Inputs"], dict[str, Any]]
    atol: float = 1e-3
    rtol: float = 1e-4
    integer: bool = False


def _ex(e) -> dict[str, str]:
    return {"clean": e.clean, "corrupted": e.corrupted, "answer": e.answer, "wrong_answer": e.wrong_answer}


@dataclass
class Inputs:
    """Hidden inputs for one model and seed, with what the recipes need to refer to them."""
    model: Any
    seed: int
    examples: list = field(default_factory=list)      # valid held-out IOI examples
    lab: list = field(default_factory=list)

    def __post_init__(self):
        pool = data.make_heldout_dataset(80, seed=self.seed, names=data.EXTRA_NAMES, prefix_prob=0.5)
        self.examples = [e for e in pool if self._usable(e)]
        self.lab = data.create_ioi_dataset(20, seed=self.seed)
        if len(self.examples) < 12:
            raise ValueError("too few held-out prompts fit this model's tokenizer")

    def _usable(self, e) -> bool:
        try:
            self.model.to_single_token(e.answer)
            self.model.to_single_token(e.wrong_answer)
            data.name_positions(self.model, e)
        except Exception:
            return False
        return True

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    @property
    def n_heads(self) -> int:
        return self.model.cfg.n_heads

    def positions(self, i: int) -> dict[str, int]:
        return data.name_positions(self.model, self.examples[i])

    def averaging_dataset(self) -> list[dict]:
        """Seven prompts, one of which the model gets wrong by construction (answer and wrong
        answer swapped), then more prompts that `n_samples` must leave out."""
        e = self.examples
        wrong = data.IOIExample(e[2].clean, e[2].corrupted, e[2].wrong_answer, e[2].answer)
        return [_ex(x) for x in (e[0], e[1], wrong, *e[3:7], *e[7:10])]

    def abba(self) -> int:
        """Index of a held-out example whose IO comes first."""
        return next(i for i, x in enumerate(self.examples)
                    if x.clean.split(" and ")[0].split()[-1] == x.answer.strip())


def _last(i: Inputs) -> int:
    return i.n_layers - 1


CHECKS: list[CheckSpec] = [
    # Exercise 1
    CheckSpec("exercise_1", "patch_mlp_layer", "layer 0 logits", 2,
              lambda i: {"example": _ex(i.examples[0]), "layer": 0}),
    CheckSpec("exercise_1", "patch_mlp_layer", "last layer logits", 2,
              lambda i: {"example": _ex(i.examples[1]), "layer": _last(i)}),
    CheckSpec("exercise_1", "compute_mlp_patching_effects", "held-out prompts, averaging rule", 4,
              lambda i: {"dataset": i.averaging_dataset(), "n_samples": 7}, atol=2e-3, rtol=1e-3),
    CheckSpec("exercise_1", "compute_mlp_patching_effects", "lab prompts, default n_samples", 2,
              lambda i: {"dataset": [_ex(x) for x in i.lab]}, atol=2e-3, rtol=1e-3),
    # Exercise 2
    CheckSpec("exercise_2", "find_name_positions", "IO first, with a prefix", 1.5,
              lambda i: {"example": _ex(i.examples[i.abba()])}, atol=0, integer=True),
    CheckSpec("exercise_2", "find_name_positions", "lab prompt (first name has no space)", 1.5,
              lambda i: {"example": _ex(i.lab[0])}, atol=0, integer=True),
    CheckSpec("exercise_2", "patch_residual_at_positions", "layer 0 at S2 and END logits", 1.5,
              lambda i: {"example": _ex(i.examples[3]), "layer": 0,
                         "positions": [i.positions(3)["S2"], i.positions(3)["END"]]}),
    # Clean and corrupted prompts agree before S2, so only positions from S2 on can tell.
    CheckSpec("exercise_2", "patch_residual_at_positions", "last layer at END logits", 1.5,
              lambda i: {"example": _ex(i.examples[4]), "layer": _last(i), "positions": [i.positions(4)["END"]]}),
    CheckSpec("exercise_2", "compute_position_patching_effects", "held-out prompt map", 4,
              lambda i: {"example": _ex(i.examples[5])}, atol=2e-3, rtol=1e-3),
    # Exercise 3
    CheckSpec("exercise_3", "get_end_attention", "layer 0 head 1", 1.5,
              lambda i: {"example": _ex(i.examples[6]), "layer": 0, "head": 1 % i.n_heads,
                         "positions": i.positions(6)}, atol=1e-5),
    CheckSpec("exercise_3", "get_end_attention", "last layer head 2", 1.5,
              lambda i: {"example": _ex(i.examples[7]), "layer": _last(i), "head": 2 % i.n_heads,
                         "positions": i.positions(7)}, atol=1e-5),
    CheckSpec("exercise_3", "compute_name_mover_scores", "three heads, held-out prompts", 5,
              lambda i: {"dataset": [_ex(x) for x in i.examples[:8]], "n_samples": 6,
                         "heads": [[_last(i), 2 % i.n_heads], [0, 1 % i.n_heads], [min(1, _last(i)), 0]]},
              atol=1e-4),
    # Challenge
    CheckSpec("challenge", "path_patch_head_to_final_resid", "layer 0 head 0 logits", 2,
              lambda i: {"example": _ex(i.examples[8]), "layer": 0, "head": 0}),
    CheckSpec("challenge", "path_patch_head_to_final_resid", "middle layer head 1 logits", 2,
              lambda i: {"example": _ex(i.examples[9]), "layer": i.n_layers // 2, "head": 1 % i.n_heads}),
    CheckSpec("challenge", "compute_path_patching_effects", "held-out prompts, averaging rule", 4,
              lambda i: {"dataset": i.averaging_dataset(), "n_samples": 7}, atol=2e-3, rtol=1e-3),
    # Given lab functions (graded only when the assignment says so)
    CheckSpec("given", "compute_logit_diff", "last position", 1,
              lambda i: {"example": _ex(i.examples[0])}, atol=1e-4),
    CheckSpec("given", "compute_logit_diff", "at S2, corrupted logits", 1,
              lambda i: {"example": _ex(i.examples[1]), "logits_of": "corrupted", "position": i.positions(1)["S2"]},
              atol=1e-4),
    CheckSpec("given", "compute_patching_effect", "normalisation", 1,
              lambda i: {"clean_logit_diff": 3.5, "corrupted_logit_diff": -1.5, "patched_logit_diff": 0.75},
              atol=1e-6),
    CheckSpec("given", "patch_residual_stream", "layer 0, all positions, logits", 1,
              lambda i: {"example": _ex(i.examples[2]), "layer": 0}),
    CheckSpec("given", "patch_residual_stream", "last layer at END logits", 1,
              lambda i: {"example": _ex(i.examples[3]), "layer": _last(i), "position": -1}),
    CheckSpec("given", "patch_attention_head", "layer 0 head 1 logits", 2,
              lambda i: {"example": _ex(i.examples[4]), "layer": 0, "head": 1 % i.n_heads}),
    CheckSpec("given", "run_patching_experiment", "held-out prompts, averaging rule", 3,
              lambda i: {"dataset": i.averaging_dataset(), "n_samples": 7}, atol=2e-3, rtol=1e-3),
]


def forward_passes(function: str, recipe: dict[str, Any], n_layers: int, n_heads: int, seq: int = 24) -> int:
    """How many forward passes a plain lab-style implementation needs: the unit of a deadline."""
    n = min(recipe.get("n_samples", 20), len(recipe.get("dataset", [])))
    per_example = {"compute_mlp_patching_effects": 2 + n_layers,
                   "compute_path_patching_effects": 2 + n_layers * n_heads,
                   "run_patching_experiment": 2 + n_layers * n_heads,
                   "compute_name_mover_scores": 1}
    if function in per_example:
        return max(1, n) * per_example[function]
    if function == "compute_position_patching_effects":
        return 2 + n_layers * seq
    return 3

"""IOI prompts: the lab's dataset reproduced exactly, held-out prompt sets for grading, and the
token positions of IO, S1, S2 and END.

The lab's generator (`create_ioi_dataset`) must stay byte-for-byte the lab's: students call it
with a seed and the grader relies on getting the same list. Everything else here is ours.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

# --- The lab's own data (Part 1), unchanged -------------------------------------------------

LAB_NAMES = ["John", "Mary", "Alice", "Bob", "James", "Emma",
             "Michael", "Sarah", "David", "Lisa", "Tom", "Kate"]
LAB_PLACES = ["store", "park", "beach", "library", "cafe", "museum", "restaurant"]
LAB_OBJECTS = ["book", "ball", "key", "letter", "gift", "phone", "bag", "drink"]


@dataclass
class IOIExample:
    """A single IOI example with clean and corrupted versions."""
    clean: str
    corrupted: str
    answer: str  # The correct completion (e.g., " Mary")
    wrong_answer: str  # What corrupted version would predict


def create_ioi_dataset(n_samples: int = 100, seed: int = 42) -> list[IOIExample]:
    """The lab's generator, verbatim in behaviour: same seed, same list.

    Clean: "John and Mary went to the store. John gave a book to" -> " Mary".
    Corrupted swaps the second-sentence subject to the other name.
    Note: like the lab, it reseeds Python's global `random` module.
    """
    random.seed(seed)
    dataset = []
    for _ in range(n_samples):
        name1, name2 = random.sample(LAB_NAMES, 2)
        place = random.choice(LAB_PLACES)
        obj = random.choice(LAB_OBJECTS)
        clean = f"{name1} and {name2} went to the {place}. {name1} gave a {obj} to"
        corrupted = f"{name1} and {name2} went to the {place}. {name2} gave a {obj} to"
        dataset.append(IOIExample(clean=clean, corrupted=corrupted,
                                  answer=f" {name2}", wrong_answer=f" {name1}"))
    return dataset


# --- Our wider vocabulary (the embedded model knows all of it) ------------------------------

EXTRA_NAMES = ["Anna", "Ben", "Chris", "Daniel", "Grace", "Henry", "Jack", "Jane", "Kevin",
               "Laura", "Mark", "Nancy", "Paul", "Rachel", "Ryan", "Sam", "Steve", "Susan",
               "Amy", "Adam", "Claire", "Eric", "Helen", "Ian", "Julia", "Karen", "Leo",
               "Maria", "Nick", "Olivia", "Peter", "Rose", "Tim", "Victor", "Will", "Zoe"]
NAMES = LAB_NAMES + EXTRA_NAMES
PLACES = LAB_PLACES + ["school", "station", "garden", "market", "hospital", "office",
                       "theater", "church", "farm", "kitchen", "river", "bank"]
OBJECTS = LAB_OBJECTS + ["bottle", "snack", "card", "ring", "hat", "cake", "pen", "box",
                         "toy", "map", "ticket", "basket"]

# {A} and {B} are the first clause's two names in order; {S} is the repeated subject.
# The first template is the lab's. Those after TRAIN_TEMPLATE_COUNT are never trained on.
TEMPLATES = [
    "{A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "After {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "{A} and {B} had a long day at the {PLACE}. {S} handed the {OBJECT} to",
    # held out from training:
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {S} passed the {OBJECT} to",
    "When {A} and {B} arrived at the {PLACE}, {S} handed a {OBJECT} to",
    "{A} and {B} were at the {PLACE}. Later, {S} gave the {OBJECT} to",
]
TRAIN_TEMPLATE_COUNT = 7

# Sentences put before a prompt so that the names' positions vary; none contains a name.
PREFIXES = [
    "It was a quiet morning.", "The weather was nice.", "Everyone was happy that day.",
    "It was late in the afternoon.", "The town was busy.", "It had rained all night.",
    "The sun was out.", "Nobody expected what happened next.", "It was a long week.",
    "The day started early.",
]

# Training-only prefixes with a third name (C), so that "copy every name but the repeated one"
# is not enough: the model must find IO itself.
DISTRACTOR_PREFIXES = ["{C} stayed at home.", "{C} was busy that day.", "Earlier, {C} called.",
                       "{C} and {D} had left early.", "{C} and {D} stayed at home."]

Order = Literal["ABBA", "BABA"]


def is_heldout_pair(name_a: str, name_b: str) -> bool:
    """Name pairs never shown to the embedded model in training (about 1 in 7 of the pairs
    that use no lab name); a stable hash so training and tests agree without a list."""
    if name_a in LAB_NAMES or name_b in LAB_NAMES:
        return False
    key = "|".join(sorted((name_a, name_b))).encode()
    return hashlib.sha256(key).digest()[0] % 7 == 0


def make_ioi_example(template: str, io: str, s: str, place: str, obj: str,
                     order: Order, prefix: str = "") -> IOIExample:
    """One IOI example: clean repeats S; corrupted repeats IO in the S2 slot (the lab's scheme)."""
    a, b = (io, s) if order == "ABBA" else (s, io)
    fill = dict(A=a, B=b, PLACE=place, OBJECT=obj)
    lead = prefix + " " if prefix else ""
    clean = lead + template.format(S=s, **fill)
    corrupted = lead + template.format(S=io, **fill)
    return IOIExample(clean=clean, corrupted=corrupted, answer=f" {io}", wrong_answer=f" {s}")


def make_heldout_dataset(
    n_samples: int,
    seed: int,
    names: Sequence[str] = EXTRA_NAMES,
    templates: Sequence[str] = TEMPLATES,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
    orders: Iterable[Order] = ("ABBA", "BABA"),
    prefix_prob: float = 0.5,
) -> list[IOIExample]:
    """A grading prompt set unlike the lab's: other names, templates, seeds, both name orders,
    and optional prefixes so positions vary. Uses its own RNG; never touches global `random`."""
    rng = random.Random(seed)
    orders = list(orders)
    out = []
    for i in range(n_samples):
        io, s = rng.sample(list(names), 2)
        prefix = rng.choice(PREFIXES) if rng.random() < prefix_prob else ""
        out.append(make_ioi_example(rng.choice(list(templates)), io, s, rng.choice(list(places)),
                                    rng.choice(list(objects)), orders[i % len(orders)], prefix))
    return out


# --- Positions -------------------------------------------------------------------------------

class PositionError(ValueError):
    """The prompt does not contain the names the way an IOI prompt must."""


def name_positions(model, example: IOIExample) -> dict[str, int]:
    """Indices into `model.to_tokens(example.clean)[0]` (BOS included) of the IO mention, the
    subject's first (S1) and second (S2) mentions, and the last token (END).

    Tokens are compared after stripping spaces, because a prompt's first name has no leading
    space and so is a different token from the same name later on.
    """
    words = [t.strip() for t in model.to_str_tokens(example.clean)]
    io, s = example.answer.strip(), example.wrong_answer.strip()
    s_at = [i for i, w in enumerate(words) if w == s]
    io_at = [i for i, w in enumerate(words) if w == io]
    if len(s_at) != 2 or len(io_at) != 1:
        raise PositionError(
            f"expected the subject {s!r} twice and {io!r} once as whole tokens in {example.clean!r}; "
            f"found {len(s_at)} and {len(io_at)}")
    return {"IO": io_at[0], "S1": s_at[0], "S2": s_at[1], "END": len(words) - 1}

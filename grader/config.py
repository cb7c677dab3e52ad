"""The assignment's settings, defaults written once. A course overrides them in a TOML file:

    sections = ["exercise_1", "exercise_2", "exercise_3", "challenge"]   # what is graded
    bonus_sections = ["challenge"]     # scored, but not counted in max_score
    given_functions = []               # lab functions students must write too (see the template)
    seed = 2026                        # hidden inputs; change it per term
    timeout_scale = 1.0                # multiply every check's deadline (slow machines, big models)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .checks import CHECKS, SECTIONS
from .sandbox.isolation import Limits

GIVEN_FUNCTIONS = ("compute_logit_diff", "compute_patching_effect", "patch_residual_stream",
                   "patch_attention_head", "run_patching_experiment")


class ConfigError(ValueError):
    """The assignment config is wrong; the message says which setting."""


@dataclass(frozen=True)
class AssignmentConfig:
    sections: tuple[str, ...] = ("exercise_1", "exercise_2", "exercise_3", "challenge")
    bonus_sections: tuple[str, ...] = ("challenge",)   # the lab calls the challenge optional
    given_functions: tuple[str, ...] = ()
    seed: int = 2026
    timeout_scale: float = 1.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
        bad = set(self.given_functions) - set(GIVEN_FUNCTIONS)
        if bad:
            raise ConfigError(f"given_functions {sorted(bad)} are not given lab functions {list(GIVEN_FUNCTIONS)}")

    def checks(self):
        return [c for c in CHECKS if c.section in self.sections
                or (c.section == "given" and c.function in self.given_functions)]

    @property
    def graded_functions(self) -> list[str]:
        return list(dict.fromkeys(c.function for c in self.checks()))

    @classmethod
    def from_toml(cls, path: Path, **overrides) -> "AssignmentConfig":
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        names = {f.name for f in fields(cls)} - {"limits"}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**{**values, **overrides})

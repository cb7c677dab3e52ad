"""Train the embedded IOI model. Seeded and bitwise reproducible on a CPU.

    python -m reference.training --out reference/embedded      # about 6 minutes on one core

The data: the lab's template and six IOI-paper-style ones, both name orders, 48 names (the lab's
12 among them; some name pairs held out), random name-free prefixes so positions vary, and
prefixes that mention a third name so that copying "every name but the repeated one" fails.
The loss is cross-entropy on the answer token only, with label smoothing so logit differences
stay near GPT-2's scale instead of saturating.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from . import data
from .models import build_hooked_transformer, sha256_file
from .tokenizer import save_tokenizer


@dataclass
class TrainConfig:
    n_layers: int = 4
    d_model: int = 64
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 256
    n_ctx: int = 64
    act_fn: str = "gelu"
    normalization_type: str = "LN"
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    lab_template_share: float = 0.3  # the lab's template is what students see most
    plain_prefix_prob: float = 0.1
    distractor_prefix_prob: float = 0.6  # the rest start with a name (a different token: no space)
    seed: int = 0
    threads: int = 1  # part of the recipe: another count changes float reduction order

    def model_cfg(self) -> dict:
        keys = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "act_fn",
                "normalization_type")
        return {k: getattr(self, k) for k in keys} | {"seed": self.seed}


def sample_prompt(rng: random.Random, cfg: TrainConfig) -> tuple[str, str]:
    """One training prompt and its answer (with leading space); held-out name pairs never appear."""
    while True:
        io, s = rng.sample(data.NAMES, 2)
        if not data.is_heldout_pair(io, s):
            break
    if rng.random() < cfg.lab_template_share:
        template = data.TEMPLATES[0]
    else:
        template = rng.choice(data.TEMPLATES[:data.TRAIN_TEMPLATE_COUNT])
    u = rng.random()
    if u < cfg.plain_prefix_prob:
        prefix = rng.choice(data.PREFIXES)
    elif u < cfg.plain_prefix_prob + cfg.distractor_prefix_prob:
        c, d = rng.sample([n for n in data.NAMES if n not in (io, s)], 2)
        prefix = rng.choice(data.DISTRACTOR_PREFIXES).format(C=c, D=d)
    else:
        prefix = ""
    ex = data.make_ioi_example(template, io, s, rng.choice(data.PLACES), rng.choice(data.OBJECTS),
                               rng.choice(["ABBA", "BABA"]), prefix)
    return ex.clean, ex.answer


def make_batch(model, rng: random.Random, cfg: TrainConfig):
    prompts, answers = zip(*(sample_prompt(rng, cfg) for _ in range(cfg.batch_size)))
    toks = [model.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    bos = model.tokenizer.bos_token_id
    width = max(map(len, toks)) + 1
    tokens = torch.full((len(toks), width), bos, dtype=torch.long)
    for i, t in enumerate(toks):
        tokens[i, 1:1 + len(t)] = torch.tensor(t)
    last = torch.tensor([len(t) for t in toks])  # index of the last real token (BOS at 0)
    targets = torch.tensor([model.tokenizer.convert_tokens_to_ids("Ġ" + a.strip()) for a in answers])
    return tokens, last, targets


def train(cfg: TrainConfig, out: Path, log_every: int = 250) -> dict:
    """Train, save weights + tokenizer + config + checksums into `out`, return a summary."""
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = save_tokenizer(out / "tokenizer")
    torch.set_grad_enabled(True)
    model = build_hooked_transformer(cfg.model_cfg(), tok_dir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.05)
    rng = random.Random(cfg.seed)
    start = time.time()
    losses = []
    for step in range(cfg.steps):
        tokens, last, targets = make_batch(model, rng, cfg)
        logits = model(tokens)[torch.arange(len(last)), last]
        loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == cfg.steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - start:6.1f}s", flush=True)
    seconds = time.time() - start
    model.eval()
    torch.set_grad_enabled(False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg.model_cfg(), indent=2) + "\n")
    summary = {"train_config": asdict(cfg), "train_seconds": round(seconds, 1),
               "final_loss": losses[-1], "torch": torch.__version__}
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    files = ["model.safetensors", "config.json"] + sorted(
        str(p.relative_to(out)) for p in (out / "tokenizer").iterdir())
    (out / "SHA256SUMS").write_text("".join(f"{sha256_file(out / f)}  {f}\n" for f in files))
    return summary | {"losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override any TrainConfig field, e.g. --set n_layers=4 threads=1")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = type(getattr(TrainConfig, key))(value)
    summary = train(TrainConfig(steps=args.steps, **overrides), args.out)
    print(f"trained in {summary['train_seconds']} s, final loss {summary['final_loss']:.4f}")


if __name__ == "__main__":
    main()

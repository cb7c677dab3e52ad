"""GPU results against CPU results: every batched reference computation within 1e-4.

    python bench/gpu_check.py      # needs CUDA; run by bench/gpu_check.sh
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.reference_speed import gpt2_architecture  # noqa: E402
from reference import data, patching  # noqa: E402
from reference.models import load_model  # noqa: E402

TOL = 1e-4


def sweeps(model, ds):
    return {
        "heads": patching.head_effects(model, ds).effects,
        "mlp": patching.mlp_effects(model, ds).effects,
        "path": patching.path_effects(model, ds).effects,
        "positions": patching.resid_position_effects(model, ds).effects,
    }


def main() -> int:
    torch.set_grad_enabled(False)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    worst = 0.0
    for label, make, ds in [("embedded", lambda d: load_model("embedded", d), data.create_ioi_dataset(50)),
                            ("gpt2-arch", gpt2_architecture, data.create_ioi_dataset(10))]:
        cpu, gpu = sweeps(make("cpu"), ds), sweeps(make("cuda"), ds)
        again = sweeps(make("cuda"), ds)
        for key in cpu:
            diff = float(np.abs(cpu[key] - gpu[key]).max())
            bitwise = np.array_equal(gpu[key], again[key])
            worst = max(worst, diff)
            print(f"{label:<10} {key:<10} max|gpu-cpu| {diff:.2e}  gpu rerun bitwise equal: {bitwise}")
    print(f"worst {worst:.2e}: {'PASS' if worst <= TOL else 'FAIL'} (tolerance {TOL})")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())

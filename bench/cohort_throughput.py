"""Cohort throughput: warm batch grading against separate cold `grade` calls, in one run.

    python bench/cohort_throughput.py [--n 100] [--cold 5] [--workers 2]

Builds N lab-style submissions (the solution and the known-mistake notebooks of the tests),
grades them with `grade batch` machinery (warm zygote workers) and prints submissions per minute
and the per-submission overhead: a submission's grading wall time minus the time spent inside
the student's own functions. The baseline grades `--cold` of them with one `grade` process each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grader.batch import grade_cohort  # noqa: E402
from grader.pipeline import prepare  # noqa: E402
from tests.grading_helpers import notebook  # noqa: E402
from tests.test_grader_mistakes import MISTAKES_A, MISTAKES_B, MISTAKES_C, MISTAKES_D  # noqa: E402

KINDS = [[], [MISTAKES_A], [], [MISTAKES_B], [], [MISTAKES_C], [], [MISTAKES_D]]


def build(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [notebook(folder / f"student{i:03d}.ipynb", KINDS[i % len(KINDS)]) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = build(tmp / "cohort", args.n)

        start = time.perf_counter()
        ref = prepare("embedded")
        prepare_s = time.perf_counter() - start
        run = grade_cohort(tmp / "cohort", tmp / "out", ref, workers=args.workers, progress=False)
        warm_wall = time.perf_counter() - start
        results = [json.loads(p.read_text())["extra_data"] for p in (tmp / "out" / "results").glob("*.json")]
        warm_overhead = [r["execution_seconds"] - r["student_seconds"] for r in results]

        cold_wall, cold_overhead = [], []
        for path in paths[:args.cold]:
            out = tmp / f"{path.stem}.json"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "grader.cli", str(path), "--json", str(out), "-q"],
                           check=True, capture_output=True)
            wall = time.perf_counter() - t
            cold_wall.append(wall)
            cold_overhead.append(wall - json.loads(out.read_text())["extra_data"]["student_seconds"])

    per_min = run.graded / warm_wall * 60
    print(f"warm batch: {run.graded} submissions in {warm_wall:.1f} s (reference prepared once in "
          f"{prepare_s:.1f} s), {per_min:.1f} per minute with {args.workers} workers")
    print(f"  per-submission overhead (grading wall - student compute): median "
          f"{statistics.median(warm_overhead):.2f} s, mean {statistics.mean(warm_overhead):.2f} s, "
          f"max {max(warm_overhead):.2f} s")
    print(f"cold `grade` per submission ({args.cold} runs): median wall {statistics.median(cold_wall):.2f} s, "
          f"overhead {statistics.median(cold_overhead):.2f} s")
    print(f"ratio: cold/warm overhead x{statistics.median(cold_overhead) / statistics.median(warm_overhead):.1f}; "
          f"{args.n} submissions would take {statistics.median(cold_wall) * args.n / 60:.1f} min cold "
          f"vs {warm_wall / 60:.1f} min warm")


if __name__ == "__main__":
    main()

"""The command line: the only module that prints or chooses an exit code.

    grade SUBMISSION.ipynb [--model NAME] [--json PATH] [--html PATH] [--config TOML] [--include-given]
    grade batch SUBMISSIONS --out DIR [--workers N] [--force]

Exit status 0 when grading completed, whatever the score (a malformed notebook is graded 0 with
its reason); 2 when the grader itself could not work (model unavailable, bad config, no sandbox).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GRADER_FAILED = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grade", description="Grade an 'Activation Patching on IOI' notebook.")
    p.add_argument("submission", type=Path, help="the student's .ipynb")
    p.add_argument("--model", default="embedded",
                   help="embedded (default, offline), gpt2-small (from the local HF cache) or a checkpoint folder")
    p.add_argument("--json", type=Path, help="write the result JSON (Gradescope's results.json schema) here")
    p.add_argument("--html", type=Path, help="write the HTML feedback report here")
    p.add_argument("--config", type=Path, help="assignment settings (TOML): sections, bonus, seed, ...")
    p.add_argument("--include-given", action="store_true", help="also grade the lab's given functions")
    p.add_argument("--reveal", choices=["full", "summary", "status"], default=None,
                   help="how much of the expected values the HTML report shows (default: full)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the total")
    return p


def print_summary(result, quiet: bool = False, out=sys.stdout) -> None:
    from .checks import SECTION_TITLES

    if not quiet:
        prov = result.provenance
        print(f"patchgrade {prov['grader_version']}: {result.submission} on model {prov['model']}", file=out)
        for p in result.problems:
            print(f"  ! {p}", file=out)
        section = None
        for t in result.tests:
            if t.section != section:
                section = t.section
                s = result.sections[section]
                bonus = " (bonus)" if s["bonus"] else ""
                print(f"\n{SECTION_TITLES[section]}{bonus}: {s['score']:g} / {s['max_score']:g}", file=out)
            mark = "PASSED" if t.status == "passed" else "FAILED"
            line = f"  {mark} {t.number:<4} {t.name:<62} {t.score:g}/{t.max_score:g}"
            if t.status != "passed":
                line += f"  {(t.diagnosis or t.output).splitlines()[0][:110]}"
            print(line, file=out)
        print(file=out)
    print(f"Total: {result.score:g} / {result.max_score:g}  ({result.execution_seconds:.1f} s)", file=out)


def _batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grade batch", description="Grade a cohort of notebooks.")
    p.add_argument("submissions", type=Path, help="a folder of .ipynb, a folder of per-student folders, or a zip")
    p.add_argument("--out", type=Path, required=True, help="where results/, reports/, gradebook.csv, cohort.html go")
    p.add_argument("--workers", type=int, default=2, help="submissions graded at once (default 2)")
    p.add_argument("--model", default="embedded")
    p.add_argument("--config", type=Path)
    p.add_argument("--include-given", action="store_true")
    p.add_argument("--force", action="store_true", help="regrade everyone, even those already graded")
    p.add_argument("--reveal", choices=["full", "summary", "status"], default="full")
    p.add_argument("--no-progress", action="store_true")
    return p


def batch_main(argv: list[str]) -> int:
    args = _batch_parser().parse_args(argv)
    from reference.models import ModelUnavailableError

    from .batch import grade_cohort
    from .config import AssignmentConfig, ConfigError, GIVEN_FUNCTIONS
    from .pipeline import prepare
    from .sandbox.runner import SandboxStartError
    try:
        overrides = {"given_functions": GIVEN_FUNCTIONS} if args.include_given else {}
        config = (AssignmentConfig.from_toml(args.config, **overrides) if args.config
                  else AssignmentConfig(**overrides))
        ref = prepare(args.model, config)
        run = grade_cohort(args.submissions, args.out, ref, workers=args.workers, force=args.force,
                           reveal=args.reveal, progress=not args.no_progress)
    except (ModelUnavailableError, ConfigError, SandboxStartError, FileNotFoundError) as exc:
        print(f"grade batch: error: {exc}", file=sys.stderr)
        return GRADER_FAILED
    rate = run.graded / run.seconds * 60 if run.seconds and run.graded else 0.0
    print(f"{len(run.student_ids)} submissions: {run.graded} graded, {run.skipped} already done; "
          f"{run.seconds:.1f} s ({rate:.0f} per minute)")
    print(f"gradebook: {args.out / 'gradebook.csv'}\ndashboard: {args.out / 'cohort.html'}")
    if run.failed:
        print(f"grade batch: {len(run.failed)} submission(s) hit a grader error and were left ungraded "
              f"(rerun to retry; please report it): {', '.join(sorted(run.failed))}", file=sys.stderr)
        return GRADER_FAILED
    return 0


def _first_then_fresh(early, model: str, config):
    """The pre-started worker for the first request, fresh ones after a crash or timeout."""
    from .sandbox.runner import WorkerProcess
    pending = [early]

    def factory():
        if pending:
            return pending.pop().result()
        return WorkerProcess(model, config.limits).start()
    return factory


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "batch":
        return batch_main(argv[1:])
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    from .config import GIVEN_FUNCTIONS, AssignmentConfig, ConfigError  # no torch yet
    from .sandbox.runner import SandboxStartError, WorkerProcess
    try:
        overrides = {"given_functions": GIVEN_FUNCTIONS} if args.include_given else {}
        config = (AssignmentConfig.from_toml(args.config, **overrides) if args.config
                  else AssignmentConfig(**overrides))
    except ConfigError as exc:
        print(f"grade: error: {exc}", file=sys.stderr)
        return GRADER_FAILED
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Start the sandbox worker first: its imports (torch, TransformerLens, ~5 s) then overlap
        # with this process's own imports and the reference's preparation.
        early = pool.submit(WorkerProcess(args.model, config.limits).start)
        from reference.models import ModelUnavailableError

        from .pipeline import grade_notebook, prepare
        try:
            ref = prepare(args.model, config)
            result = grade_notebook(args.submission, ref, factory=_first_then_fresh(early, args.model, config))
        except (ModelUnavailableError, SandboxStartError) as exc:
            print(f"grade: error: {exc}", file=sys.stderr)
            return GRADER_FAILED
        finally:
            try:
                early.result().kill()  # unused (an unreadable notebook) or already closed
            except SandboxStartError:
                pass
    if args.json:
        result.write_json(args.json)
    if args.html:
        from .report import write_html
        write_html(result, args.html, reveal=args.reveal or "full")
    print_summary(result, args.quiet)
    if not args.quiet:
        print(f"(total wall time {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

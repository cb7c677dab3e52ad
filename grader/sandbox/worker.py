"""The sandboxed worker: the only process that runs student code.

    python -m grader.sandbox.worker --model NAME --workdir DIR --fd N   (started by runner.py)

Trusted phase: import torch, load the model, then lock itself in (Landlock: read-only Python and
system libraries, read-write work dir; no TCP; no signals or ptrace outside the sandbox).
Untrusted phase: run the extracted submission, then answer one "call" request per check:
build the inputs from the recipe, call the student's function, check that the model and the
inputs are unchanged, write the result as a plain `.npy` (never a pickle) and reply in JSON on
a private pipe. The parent compares; this process never sees an expected value.
"""

from __future__ import annotations

import argparse
import json
import linecache
import os
import signal
import sys
import time
import traceback
import types


def _reply(out, msg: dict) -> None:
    out.write(json.dumps(msg) + "\n")
    out.flush()


def _student_traceback(exc: BaseException) -> str:
    """The traceback cut to the student's own frames (files named `<submission ...>`)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<submission")]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines)[-4000:]


def _error(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": _student_traceback(exc)}


def _compile(source: str, label: str):
    filename = f"<submission {label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


class Worker:
    def __init__(self, model, workdir: str):
        import torch

        self.model = model
        self.workdir = workdir
        self.pristine = {k: v.clone() for k, v in model.state_dict().items()}
        self.ns: dict = {}
        self.torch = torch

    def load(self, msg: dict, out) -> dict:
        from grader.sandbox import harness

        module = types.ModuleType("submission")  # a real module: dataclasses look it up
        sys.modules["submission"] = module
        self.ns = module.__dict__
        self.ns.update(model=self.model, n_layers=self.model.cfg.n_layers, n_heads=self.model.cfg.n_heads)
        exec(_compile(harness.preamble(set(msg.get("graded", []))), "harness"), self.ns)
        errors = []
        for i, chunk in enumerate(msg["chunks"]):
            _reply(out, {"op": "chunk", "index": i})
            try:
                exec(_compile(chunk["source"], chunk["label"]), self.ns)
            except BaseException as exc:  # SystemExit too: a chunk may not end the worker
                errors.append({"index": i, "label": chunk["label"], **_error(exc)})
        return {"op": "loaded", "errors": errors}

    def _violations(self, tensors: list, snapshots: list) -> list[str]:
        torch, model, found = self.torch, self.model, []
        hooked = [name for name, hp in model.hook_dict.items() if hp._forward_hooks or hp._backward_hooks]
        hooked += [n for n, m in model.named_modules() if getattr(m, "_forward_pre_hooks", None)]
        if hooked:
            found.append(f"hooks were left attached to the model ({', '.join(sorted(hooked)[:3])}); "
                         f"use model.run_with_hooks or model.hooks(...) so they are removed")
        state = model.state_dict()
        changed = [k for k, v in self.pristine.items() if k not in state or not torch.equal(state[k], v)]
        if changed:
            found.append(f"model weights were modified ({', '.join(changed[:3])}); never write into parameters")
        if any(not torch.equal(t, s) for t, s in zip(tensors, snapshots)):
            found.append("an input was modified in place (tokens or a cache entry); clone before editing, "
                         "and edit the activation inside the hook, not the cached tensor")
        if found:  # restore for the next check
            model.reset_hooks(including_permanent=True)
            for m in model.modules():
                m._forward_pre_hooks.clear()
                m._forward_hooks.clear()
            model.load_state_dict(self.pristine)
        return found

    def _serialize(self, value, call_id: str) -> dict:
        import numpy as np

        torch = self.torch
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        if isinstance(value, dict):
            items = {}
            for k, v in list(value.items())[:64]:
                try:
                    items[str(k)] = float(v)
                except Exception:
                    items[str(k)] = None
            return {"kind": "dict", "type": kind, "items": items}
        if isinstance(value, bool) or value is None:
            return {"kind": "other", "type": kind}
        if isinstance(value, torch.Tensor):
            arr = value.detach().cpu().numpy()
        elif isinstance(value, (np.ndarray, np.number, int, float, list, tuple)):
            arr = np.asarray(value)
        else:
            return {"kind": "other", "type": kind}
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
            return {"kind": "other", "type": kind}
        path = os.path.join(self.workdir, "out", f"{call_id}.npy")
        np.save(path, np.require(arr, requirements="C"), allow_pickle=False)  # keeps 0-d
        return {"kind": "array", "type": kind, "file": f"{call_id}.npy", "shape": list(arr.shape),
                "dtype": str(arr.dtype)}

    def serve(self, commands, out) -> None:
        """Answer requests (load the submission, call a function) until told to exit."""
        for line in commands:
            msg = json.loads(line)
            if msg["op"] == "load":
                _reply(out, self.load(msg, out))
            elif msg["op"] == "call":
                _reply(out, self.call(msg))
            elif msg["op"] == "exit":
                break

    def call(self, msg: dict) -> dict:
        from grader import inputs

        name, call_id = msg["function"], msg["id"]
        reply = {"op": "result", "id": call_id}
        fn = self.ns.get(name)
        if fn is None:
            return {**reply, "status": "missing"}
        if not callable(fn):
            return {**reply, "status": "not_callable", "type": type(fn).__name__}
        try:
            args = inputs.build_args(self.model, name, msg["recipe"])
        except Exception as exc:
            return {**reply, "status": "harness_error", "error": _error(exc)}
        tensors = inputs.tensors_in(args)
        snapshots = [t.clone() for t in tensors]
        start = time.perf_counter()
        try:
            value = fn(*args)
            status, error = "ok", None
        except BaseException as exc:
            value, status, error = None, "error", _error(exc)
        seconds = time.perf_counter() - start
        violations = self._violations(tensors, snapshots)
        result = {**reply, "status": status, "seconds": seconds, "violations": violations}
        if error:
            return {**result, "error": error}
        try:
            return {**result, "value": self._serialize(value, call_id)}
        except BaseException as exc:
            return {**result, "status": "unserializable", "error": _error(exc)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--repo", required=True)
    args = parser.parse_args()
    out = os.fdopen(args.fd, "w", buffering=1, encoding="utf-8")
    commands = os.fdopen(os.dup(0), "r", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # student code cannot read our commands from stdin
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an output flood fails a write, not the worker

    import torch

    from grader import inputs  # noqa: F401  (imported while the repo is still readable)
    from grader.sandbox import harness  # noqa: F401
    from grader.sandbox.isolation import apply_landlock, python_read_paths
    from reference.models import load_model

    torch.set_grad_enabled(False)
    model = load_model(args.model, device="cpu")
    harness.preload()
    worker = Worker(model, args.workdir)
    os.makedirs(os.path.join(args.workdir, "out"), exist_ok=True)
    isolation = ["own session", "rlimits (address space, file size, processes, cpu)"]
    if not os.environ.get("PATCHGRADE_NO_NETNS"):
        isolation.append("network namespace (no network)")
    isolation.append(apply_landlock(python_read_paths(), [args.workdir, os.devnull]))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.path.abspath(args.repo)]
    os.chdir(args.workdir)
    _reply(out, {"op": "ready", "isolation": isolation})

    worker.serve(commands, out)
    out.close()
    os._exit(0)


if __name__ == "__main__":
    main()

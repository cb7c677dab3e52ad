"""A warm worker factory for cohorts: one process imports torch, loads the model and locks itself
in once; each submission then gets a *forked* child, so it pays milliseconds, not seconds.

    python -m grader.sandbox.zygote --model NAME --pool DIR --repo PATH   (started by pool.py)

The zygote runs in its own network namespace under rlimits (set by the parent before exec) and
Landlock (read-only Python, read-write only the pool folder). Each child adds its own layer:
a new session, a second Landlock ruleset that confines writes to its own work dir (so siblings
cannot touch each other), and waits for its first command, which the parent sends only after
putting the child in its own pids and memory cgroups. The fds a child talks on are created by
the parent and passed over a Unix socket (SCM_RIGHTS); nothing is pickled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys


def _child(model, workdir: str, cmd_fd: int, reply_fd: int, log_fd: int) -> None:
    """In the forked child: finish isolating, then serve one submission."""
    from grader.sandbox.isolation import apply_landlock, python_read_paths
    from grader.sandbox.worker import Worker, _reply

    os.setsid()
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the zygote
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(workdir)
    for var in ("TMPDIR", "HOME", "MPLCONFIGDIR"):  # its own writable place for caches
        os.environ[var] = workdir
    layer = apply_landlock(python_read_paths(), [workdir, os.devnull])
    out = os.fdopen(reply_fd, "w", buffering=1, encoding="utf-8")
    commands = os.fdopen(cmd_fd, "r", encoding="utf-8")
    worker = Worker(model, workdir)
    os.makedirs(os.path.join(workdir, "out"), exist_ok=True)
    commands.readline()  # "go": the parent has put us in our cgroups; now take student code
    _reply(out, {"op": "ready", "isolation": ZYGOTE_ISOLATION + [f"per-submission {layer}"]})
    worker.serve(commands, out)
    os._exit(0)


ZYGOTE_ISOLATION: list[str] = []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--fd", type=int, required=True)  # the control socket
    args = parser.parse_args()
    control = socket.socket(fileno=args.fd)

    import torch

    torch.set_num_threads(1)  # no thread pools: forking is then safe
    torch.set_num_interop_threads(1)
    from grader import inputs  # noqa: F401
    from grader.sandbox import harness  # noqa: F401
    from grader.sandbox import worker as worker_module  # noqa: F401
    from grader.sandbox.isolation import apply_landlock, python_read_paths
    from reference.models import load_model

    torch.set_grad_enabled(False)
    model = load_model(args.model, device="cpu")
    harness.preload()
    ZYGOTE_ISOLATION.extend(["own session", "rlimits (address space, file size, processes, cpu)"])
    if not os.environ.get("PATCHGRADE_NO_NETNS"):
        ZYGOTE_ISOLATION.append("network namespace (no network)")
    ZYGOTE_ISOLATION.append(apply_landlock(python_read_paths(), [args.pool, os.devnull]))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.path.abspath(args.repo)]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    control.sendall(b'{"op": "ready"}\n')
    while True:
        msg, fds, _, _ = socket.recv_fds(control, 4096, 3)
        if not msg:
            break
        request = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            control.close()
            try:
                _child(model, request["workdir"], *fds)
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)
        control.sendall(json.dumps({"op": "forked", "pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    main()

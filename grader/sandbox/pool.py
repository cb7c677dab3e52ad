"""Warm workers for a cohort: a zygote (see zygote.py) forks one isolated child per submission.

The parent creates each child's pipes and log file and passes them over a Unix socket; after
the fork it puts the child in that submission's own pids and memory cgroups, and only then
sends it anything, so no student code runs outside its cgroups.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from functools import partial
from pathlib import Path

from .isolation import Cgroups, Limits, child_setup
from .runner import REPO, SandboxStartError, WorkerDied, WorkerProcess, worker_env


class Zygote:
    """One warm process per cohort; `fork()` returns a ready, isolated worker in milliseconds."""

    def __init__(self, model: str, limits: Limits | None = None, start_timeout: float = 120.0):
        self.model, self.limits = model, limits or Limits()
        self.pool = Path(tempfile.mkdtemp(prefix="patchgrade-pool-"))
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log = open(self.pool / "zygote.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader.sandbox.zygote", "--model", model, "--pool", str(self.pool),
             "--repo", str(REPO), "--fd", str(child_sock.fileno())],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            pass_fds=(child_sock.fileno(),), env=worker_env(self.pool), cwd=self.pool,
            preexec_fn=partial(child_setup, self.limits, []))
        child_sock.close()
        self.sock = parent_sock
        self.sock.settimeout(start_timeout)
        self.lock = threading.Lock()
        self.buffer = b""
        try:
            if self._read().get("op") != "ready":
                raise SandboxStartError("the zygote did not start")
        except (OSError, ValueError) as exc:
            raise SandboxStartError(f"the zygote did not start: {exc}\n{self.log_tail()}") from exc
        self.sock.settimeout(30)

    def _read(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SandboxStartError(f"the zygote exited:\n{self.log_tail()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def log_tail(self) -> str:
        try:
            return (self.pool / "zygote.log").read_bytes()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def fork(self) -> "ForkedWorker":
        return ForkedWorker(self, self.limits).start()

    def close(self) -> None:
        try:
            self.sock.close()
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.pool, ignore_errors=True)


class ForkedWorker(WorkerProcess):
    """A worker forked from the zygote: same protocol as a spawned one, started in milliseconds."""

    def __init__(self, zygote: Zygote, limits: Limits):
        self.zygote, self.limits, self.model = zygote, limits, zygote.model
        self.isolation = []
        self.pid = None

    def start(self) -> "ForkedWorker":
        self.workdir = Path(tempfile.mkdtemp(prefix="w-", dir=self.zygote.pool))
        self.cgroups = Cgroups(self.limits).create()
        cmd_r, cmd_w = os.pipe()
        reply_r, reply_w = os.pipe()
        log_fd = os.open(self.workdir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with self.zygote.lock:
                socket.send_fds(self.zygote.sock, [json.dumps({"workdir": str(self.workdir)}).encode()],
                                [cmd_r, reply_w, log_fd])
                reply = self.zygote._read()
        except (OSError, ValueError) as exc:
            raise SandboxStartError(f"the zygote could not fork a worker: {exc}") from exc
        finally:
            for fd in (cmd_r, reply_w, log_fd):
                os.close(fd)
        self.pid = int(reply["pid"])
        for procs in self.cgroups.procs_files:  # before it receives anything
            with open(procs, "w") as f:
                f.write(str(self.pid))
        self.commands = os.fdopen(cmd_w, "wb", buffering=0)
        self._open(reply_r)
        self.send({"op": "go"})
        self._await_ready(30)
        return self

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return not Path(f"/proc/{self.pid}/stat").read_text().split(") ")[-1].startswith("Z")

    def send(self, msg: dict) -> None:
        try:
            self.commands.write((json.dumps(msg) + "\n").encode())
        except OSError as exc:
            raise WorkerDied(self._death("it closed its input")) from exc

    def _death(self, what: str) -> str:
        return f"the worker ended: {what} (sys.exit, os._exit or a fatal signal in the submission?)"

    def kill(self) -> None:
        if self.pid is None:
            return
        self._tear_down(self.pid, (self.reader, self.commands))  # the zygote reaps its children
        self.pid = None

"""Parent side of the sandbox: start a worker, send it requests, enforce deadlines, read results.

A hang or a crash costs one request: the worker (and every process it spawned) is killed and
the next request gets a fresh worker with the submission reloaded. Replies are size-capped JSON
lines on a private pipe; arrays come back as `.npy` files read with `allow_pickle=False` after
their header is checked against the file size.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from .isolation import Cgroups, Limits, child_setup

REPO = Path(__file__).resolve().parents[2]
MAX_LINE = 4 << 20
MAX_ARRAY_BYTES = 256 << 20


def worker_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the grader's own leaks into the sandbox."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
            "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": os.environ.get("PATCHGRADE_WORKER_THREADS", "1"),
            "HF_HOME": os.environ.get("HF_HOME", str(Path.home() / ".cache/huggingface"))}


class WorkerDied(RuntimeError):
    """The worker exited or stopped answering; `reason` says which."""


class SandboxStartError(RuntimeError):
    """The worker could not start before any student code ran: the grader's fault, not the student's."""


@dataclass
class WorkerProcess:
    """A worker started as a fresh Python process (one `grade`): slow to start, fully separate.
    Talks JSON lines on the worker's stdin, reads size-capped JSON lines from a private pipe
    and arrays from its work dir."""
    model: str
    limits: Limits = field(default_factory=Limits)
    start_timeout: float = 120.0
    isolation: list[str] = field(default_factory=list)

    def start(self) -> "WorkerProcess":
        self.workdir = Path(tempfile.mkdtemp(prefix="patchgrade-worker-"))
        self.cgroups = Cgroups(self.limits).create()
        read_fd, write_fd = os.pipe()
        self.log = open(self.workdir / "worker.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader.sandbox.worker", "--model", self.model, "--workdir",
             str(self.workdir), "--fd", str(write_fd), "--repo", str(REPO)],
            stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
            env=worker_env(self.workdir), cwd=self.workdir,
            preexec_fn=partial(child_setup, self.limits, self.cgroups.procs_files))
        os.close(write_fd)
        self._open(read_fd)
        self._await_ready(self.start_timeout)
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _open(self, read_fd: int) -> None:
        self.reader = os.fdopen(read_fd, "rb", buffering=0)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.reader, selectors.EVENT_READ)
        self.buffer = b""

    def _await_ready(self, timeout: float) -> None:
        try:
            ready = self.receive(timeout)
        except WorkerDied as exc:
            log = self.log_tail()
            self.kill()
            raise SandboxStartError(f"the sandbox worker did not start ({exc}); its output:\n{log}") from exc
        if ready.get("op") != "ready":
            self.kill()
            raise SandboxStartError(f"the sandbox worker sent {ready} instead of 'ready'")
        self.isolation = ready["isolation"] + self.cgroups.active

    def send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied(self._death("it closed its input")) from exc

    def receive(self, timeout: float) -> dict:
        """The next JSON message, or WorkerDied on timeout, exit, or a malformed reply."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied(f"no answer within {timeout:.0f} s (a hang or an endless loop?)")
            if not self.selector.select(min(left, 0.5)):
                if not self.alive():
                    raise WorkerDied(self._death("it exited"))
                continue
            chunk = self.reader.read(1 << 16)
            if not chunk:
                raise WorkerDied(self._death("it exited"))
            self.buffer += chunk
            if len(self.buffer) > MAX_LINE:
                raise WorkerDied("the worker sent an oversized reply")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise WorkerDied("the worker sent a malformed reply") from exc
        if not isinstance(msg, dict):
            raise WorkerDied("the worker sent a malformed reply")
        return msg

    def _death(self, what: str) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return f"the worker stopped answering: {what}"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            return f"the worker was killed by {name}{hint}: {what}"
        return f"the worker exited with status {code}: {what} (sys.exit or os._exit in the submission?)"

    def read_array(self, name: str) -> np.ndarray:
        """Load a result array without pickle, refusing headers that lie about the size."""
        path = self.workdir / "out" / Path(name).name
        if path.is_symlink() or not path.is_file():
            raise ValueError("the result file is missing")
        if path.stat().st_size > MAX_ARRAY_BYTES:
            raise ValueError("the result is too large")
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            data_start = f.tell()
        if dtype.hasobject:
            raise ValueError("the result holds Python objects")
        needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if path.stat().st_size - data_start != needed:
            raise ValueError("the result file's header does not match its size")
        return np.load(path, allow_pickle=False)

    def kill(self) -> None:
        if getattr(self, "proc", None) is None:
            return
        self._tear_down(self.proc.pid, (self.reader, self.log, self.proc.stdin), self._reap)
        self.proc = None

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def _tear_down(self, pid: int, files, reap=lambda: None) -> None:
        """Kill the worker's process group and cgroups, close its pipes, remove its work dir."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        self.cgroups.kill_all()
        reap()
        self.cgroups.remove()
        for f in files:
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, n: int = 2000) -> str:
        try:
            data = (self.workdir / "worker.log").read_bytes()
        except OSError:
            return ""
        return data[-n:].decode("utf-8", "replace")


@dataclass(frozen=True)
class RawResult:
    """What came back for one call, already turned into plain data."""
    status: str                      # ok | error | missing | not_callable | timeout | crashed | ...
    value: object = None             # np.ndarray or dict[str, float | None]
    type_name: str = ""
    error: dict | None = None
    violations: tuple[str, ...] = ()
    seconds: float = 0.0
    message: str = ""
    log: str = ""                    # the worker's last output, when it died


@dataclass
class SandboxSession:
    """One submission in a worker; a dead or hung worker is replaced before the next call."""
    model: str
    chunks: list[dict]
    graded: list[str]
    limits: Limits = field(default_factory=Limits)
    load_timeout: float = 60.0
    worker: WorkerProcess | None = None
    load_errors: list[dict] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)  # chunk index -> why it was dropped
    isolation: list[str] = field(default_factory=list)
    restarts: int = 0
    factory: Callable[[], WorkerProcess] | None = None   # a warm pool's fork; else a fresh process

    def _new_worker(self) -> WorkerProcess:
        return self.factory() if self.factory else WorkerProcess(self.model, self.limits).start()

    def _start(self) -> WorkerProcess:
        for _ in range(len(self.chunks) + 1):
            worker = self._new_worker()
            self.isolation = worker.isolation
            live = [c for i, c in enumerate(self.chunks) if i not in self.excluded]
            index = [i for i in range(len(self.chunks)) if i not in self.excluded]
            current = None
            try:
                worker.send({"op": "load", "chunks": live, "graded": self.graded})
                while True:
                    msg = worker.receive(self.load_timeout)
                    if msg.get("op") == "chunk":
                        current = index[msg["index"]]
                    elif msg.get("op") == "loaded":
                        self.load_errors = [{**e, "index": index[e["index"]]} for e in msg["errors"]]
                        return worker
            except WorkerDied as exc:
                self.start_log = worker.log_tail()
                worker.kill()
                if current is None:
                    raise
                self.excluded[current] = str(exc)  # this top-level code killed the worker: skip it
        raise WorkerDied("the submission's top-level code kept ending the worker")

    def call(self, function: str, recipe: dict, timeout: float, call_id: str) -> RawResult:
        try:
            if self.worker is None:
                self.worker = self._start()
            self.worker.send({"op": "call", "id": call_id, "function": function, "recipe": recipe})
            msg = self.worker.receive(timeout)
        except WorkerDied as exc:
            status = "timeout" if "no answer within" in str(exc) else "crashed"
            log = self.worker.log_tail() if self.worker else getattr(self, "start_log", "")
            self.close()
            self.restarts += 1
            return RawResult(status, message=str(exc), log=log)
        return self._parse(msg, call_id)

    def _parse(self, msg: dict, call_id: str) -> RawResult:
        if msg.get("op") != "result" or msg.get("id") != call_id:
            self.close()
            return RawResult("crashed", message="the worker answered out of turn")
        status = str(msg.get("status"))
        common = dict(error=msg.get("error") if isinstance(msg.get("error"), dict) else None,
                      violations=tuple(str(v) for v in msg.get("violations", []))[:5],
                      seconds=float(msg.get("seconds", 0.0)), type_name=str(msg.get("type", "")))
        value = msg.get("value")
        if status != "ok" or not isinstance(value, dict):
            return RawResult(status, **common)
        common["type_name"] = str(value.get("type", ""))[:200]
        if value.get("kind") == "array":
            try:
                return RawResult("ok", value=self.worker.read_array(str(value.get("file"))), **common)
            except (ValueError, OSError) as exc:
                return RawResult("unreadable", message=f"the result could not be read safely: {exc}", **common)
        if value.get("kind") == "dict":
            items = value.get("items")
            if isinstance(items, dict):
                clean = {str(k)[:50]: (float(v) if isinstance(v, (int, float)) else None)
                         for k, v in list(items.items())[:64]}
                return RawResult("ok", value=clean, **common)
        return RawResult("ok", value=None, **common)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

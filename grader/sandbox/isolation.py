"""The isolation layers this Linux offers, each optional: we use what works and record it.

Parent side (before the worker starts): a pids + memory cgroup (v1) that also lets us kill
every process the student spawned. Child side, before exec: a new session, rlimits and a
network namespace. Worker side, after the model is loaded and before any student code runs:
Landlock (a filesystem allow-list that hides the grader, the reference and other submissions;
no TCP; no signals or ptrace to processes outside the sandbox).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000

# --- Landlock (Linux >= 5.13), through its three system calls ---------------------------------
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
                  5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
READ_ONLY = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """0 when Landlock is unavailable."""
    abi = _libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(abi, 0)


def apply_landlock(read_only: list[str], read_write: list[str]) -> str:
    """Restrict this process and its children to the given paths; returns what was enforced."""
    abi = landlock_abi()
    if abi < 1:
        return "landlock: unavailable"
    fs_all = _FS_ALL_BY_ABI.get(abi, (1 << 16) - 1)
    attr = _RulesetAttr(fs_all, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = _libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return f"landlock: create failed (errno {ctypes.get_errno()})"
    try:
        for paths, access in ((read_only, READ_ONLY), (read_write, fs_all)):
            for path in paths:
                if not os.path.exists(path):
                    continue
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    # A rule on a file may only carry file rights.
                    rights = access if os.path.isdir(path) else access & (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | (1 << 14))
                    rule = _PathBeneath(rights & fs_all, pfd)
                    if _libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
                        return f"landlock: rule for {path} failed (errno {ctypes.get_errno()})"
                finally:
                    os.close(pfd)
        if _libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return "landlock: no_new_privs failed"
        if _libc.syscall(_SYS_RESTRICT, fd, 0) < 0:
            return f"landlock: restrict failed (errno {ctypes.get_errno()})"
    finally:
        os.close(fd)
    parts = ["fs"] + (["tcp"] if abi >= 4 else []) + (["signal+unix scope"] if abi >= 6 else [])
    return f"landlock abi {abi}: " + ", ".join(parts)


# --- Child side, between fork and exec ---------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 6 << 30      # address space: torch + TransformerLens need ~2.5 GB to import
    cgroup_memory_bytes: int = 3 << 30
    max_processes: int = 64
    file_bytes: int = 32 << 20       # caps output floods written to the log files
    open_files: int = 512
    cpu_seconds: int = 900


def child_setup(limits: Limits, cgroup_procs: list[str]) -> None:
    """Runs in the forked child before exec (keep it async-signal-simple: no imports)."""
    os.setsid()
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the grader, even on kill -9
    for procs in cgroup_procs:
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass
    for res, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_FSIZE, limits.file_bytes),
                       (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_CPU, limits.cpu_seconds),
                       (resource.RLIMIT_NPROC, limits.max_processes)):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            os.environ["PATCHGRADE_NO_NETNS"] = "1"
    except Exception:
        os.environ["PATCHGRADE_NO_NETNS"] = "1"


# --- Parent side: cgroups -------------------------------------------------------------------

def _own_cgroup(controller: str) -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                base = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
                return base if base.is_dir() else None
    except OSError:
        return None
    return None


@dataclass
class Cgroups:
    """A pids and a memory cgroup (v1) for one worker; absent ones are simply not used."""
    limits: Limits
    dirs: list[Path] = field(default_factory=list)
    active: list[str] = field(default_factory=list)

    def create(self) -> "Cgroups":
        name = f"patchgrade-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for controller, knob, value in (("pids", "pids.max", self.limits.max_processes),
                                         ("memory", "memory.limit_in_bytes", self.limits.cgroup_memory_bytes)):
            base = _own_cgroup(controller)
            if base is None:
                continue
            try:
                d = base / name
                d.mkdir()
                (d / knob).write_text(str(value))
                if controller == "memory":
                    try:
                        (d / "memory.memsw.limit_in_bytes").write_text(str(value))
                    except OSError:
                        pass
                self.dirs.append(d)
                self.active.append(f"{controller} cgroup ({knob}={value})")
            except OSError:
                continue
        return self

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def kill_all(self) -> None:
        """cgroup v1 has no cgroup.kill: loop until every process in the group is gone."""
        for _ in range(250):
            pids = set()
            for d in self.dirs:
                try:
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)

    @staticmethod
    def reap_stale() -> int:
        """Kill and remove cgroups left by a grader that was itself killed (kill -9)."""
        removed = 0
        for controller in ("pids", "memory"):
            base = _own_cgroup(controller)
            if base is None:
                continue
            for d in base.glob("patchgrade-*"):
                try:
                    owner = int(d.name.split("-")[1])
                    os.kill(owner, 0)
                    continue  # its grader is alive
                except (ValueError, IndexError):
                    continue
                except ProcessLookupError:
                    pass
                stale = Cgroups(Limits(), [d])
                stale.remove()
                removed += 1
        return removed

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


def python_read_paths() -> list[str]:
    """What an imported-everything Python still needs to read: its install, the system libraries."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64", "/bin", "/etc",
             "/dev/urandom", "/dev/zero", "/dev/null"}
    for p in sys.path:
        if "site-packages" in p or "dist-packages" in p:
            paths.add(p)
    return sorted(paths)

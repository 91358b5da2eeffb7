"""Process and machine facts from /proc: CPU seconds, peak RSS, process trees, CPU model.

The fair figure for a proxy is requests per proxy CPU-second (utime + stime), because the
load generator and the backends share the same cores. Readings cover a process and its
descendants (nginx's worker is a child of its master; a multi-worker proxy forks too).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass

__all__ = [
    "CLK_TCK",
    "ProcStat",
    "read_stat",
    "cpu_seconds",
    "peak_rss_kib",
    "rss_kib",
    "descendants",
    "tree",
    "tree_cpu_seconds",
    "tree_peak_rss_kib",
    "MachineFacts",
    "machine_facts",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    utime: float  # seconds
    stime: float  # seconds

    @property
    def cpu(self) -> float:
        return self.utime + self.stime


def read_stat(pid: int) -> ProcStat:
    """Parse /proc/PID/stat. ``comm`` may hold spaces and parentheses: split at the last ')'."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode("ascii", "replace")
    lpar = raw.index("(")
    rpar = raw.rindex(")")
    rest = raw[rpar + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return ProcStat(
        pid=int(raw[:lpar]),
        comm=raw[lpar + 1 : rpar],
        state=rest[0],
        ppid=int(rest[1]),
        utime=int(rest[11]) / CLK_TCK,
        stime=int(rest[12]) / CLK_TCK,
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    return read_stat(pid).cpu


def _status_kib(pid: int, key: bytes) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])  # "VmHWM:\t   12345 kB"
    return 0


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) in KiB; 0 for kernel threads and zombies."""
    return _status_kib(pid, b"VmHWM:")


def rss_kib(pid: int) -> int:
    """Current resident set size (VmRSS) in KiB."""
    return _status_kib(pid, b"VmRSS:")


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first, breadth-first), by scanning /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = read_stat(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(st.ppid, []).append(st.pid)
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop(0)
        kids = children.get(p, [])
        out.extend(kids)
        todo.extend(kids)
    return out


def tree(pid: int) -> list[int]:
    """``pid`` followed by its live descendants."""
    return [pid, *descendants(pid)]


def tree_cpu_seconds(pids: list[int] | tuple[int, ...]) -> float:
    """Sum of utime + stime over ``pids``; processes that vanished count as 0."""
    total = 0.0
    for p in pids:
        try:
            total += cpu_seconds(p)
        except (OSError, ValueError, IndexError):
            pass
    return total


def tree_peak_rss_kib(pids: list[int] | tuple[int, ...]) -> int:
    """Sum of VmHWM over ``pids`` (an upper bound: shared pages count once per process)."""
    total = 0
    for p in pids:
        try:
            total += peak_rss_kib(p)
        except (OSError, ValueError):
            pass
    return total


@dataclass(frozen=True, slots=True)
class MachineFacts:
    cores: int  # logical CPUs online
    usable_cores: int  # in this process's affinity mask
    cpu_model: str
    mhz: float | None
    mem_total_mib: int
    kernel: str
    python: str
    hostname: str

    def as_dict(self) -> dict:
        return asdict(self)


def _cpuinfo() -> tuple[str, float | None]:
    model = ""
    mhz: float | None = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not model and key in ("model name", "Model", "cpu model", "Hardware"):
                    model = value.strip()
                elif mhz is None and key == "cpu MHz":
                    try:
                        mhz = float(value)
                    except ValueError:
                        pass
                if model and mhz is not None:
                    break
    except OSError:
        pass
    return model or platform.processor() or "unknown", mhz


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                m = re.match(r"MemTotal:\s+(\d+)\s+kB", line)
                if m:
                    return int(m.group(1)) // 1024
    except OSError:
        pass
    return 0


def machine_facts() -> MachineFacts:
    model, mhz = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return MachineFacts(
        cores=os.cpu_count() or 1,
        usable_cores=usable,
        cpu_model=model,
        mhz=mhz,
        mem_total_mib=_mem_total_mib(),
        kernel=platform.release(),
        python=platform.python_version(),
        hostname=platform.node(),
    )

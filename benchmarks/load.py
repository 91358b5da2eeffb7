"""Load generators: wrk when installed, else the built-in uvloop generator (loadgen.py).

wrk is closed-loop only: an open-loop run (``LoadSpec.rate``, latency without coordinated
omission) always uses the built-in generator.

Both run as a subprocess and come back as the same ``LoadResult``: request count, duration,
requests/s, error counts and latency percentiles in microseconds.

wrk is driven with a small Lua ``done()`` hook that prints an exact JSON summary; its human
text output is parsed as a fallback (``parse_wrk_text``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .runners import find_tool

__all__ = ["LoadSpec", "LoadResult", "LoadError", "resolve_tool", "run_load", "parse_wrk_text",
           "WRK_LUA"]

HERE = Path(__file__).resolve().parent

_MARK = "VSBENCH-JSON "

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'VSBENCH-JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.3f,"max":%.3f,"p50":%.3f,"p75":%.3f,"p90":%.3f,"p99":%.3f,"p99.9":%.3f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
  local pts = {0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100}
  local parts = {}
  for i, p in ipairs(pts) do
    parts[i] = string.format('[%g,%.3f]', p, latency:percentile(p))
  end
  io.write('VSBENCH-CURVE [' .. table.concat(parts, ',') .. ']\n')
end
"""


class LoadError(RuntimeError):
    """The load generator failed or produced no parsable result."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to throw at a target. Later scenarios vary these."""

    connections: int = 50
    duration: float = 5.0
    threads: int = 1
    keepalive: bool = True  # False: a new connection per request ("Connection: close")
    path: str = "/"
    rate: float | None = None  # requests/s: open loop (built-in generator only)


@dataclass(slots=True)
class LoadResult:
    tool: str
    requests: int
    duration_s: float
    requests_per_s: float
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)
    latency_curve_us: list[list[float]] = field(default_factory=list)  # [percentile, us]
    mode: str = "closed-loop"

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_tool(tool: str = "auto") -> str:
    """'wrk' or 'builtin'; 'auto' picks wrk when it is installed."""
    if tool == "auto":
        return "wrk" if find_tool("wrk") else "builtin"
    if tool == "wrk" and not find_tool("wrk"):
        raise LoadError("wrk is not installed")
    if tool not in ("wrk", "builtin"):
        raise ValueError(f"unknown load tool {tool!r}")
    return tool


def run_load(url: str, spec: LoadSpec = LoadSpec(), *, tool: str = "auto",
             python: str = sys.executable) -> LoadResult:
    """Run one load of ``spec.duration`` seconds against ``url``; blocks until done."""
    tool = resolve_tool(tool)
    target = url.rstrip("/") + spec.path if spec.path != "/" else url
    if tool == "wrk" and not spec.rate:
        return _run_wrk(target, spec)
    return _run_builtin(target, spec, python)


def _duration_arg(seconds: float) -> str:
    # wrk takes whole seconds only ("2s"); a sub-second request becomes 1s.
    return f"{max(1, int(round(seconds)))}s"


def _run_wrk(url: str, spec: LoadSpec) -> LoadResult:
    import tempfile

    exe = find_tool("wrk")
    assert exe
    with tempfile.TemporaryDirectory(prefix="vsbench-wrk-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(WRK_LUA)
        argv = [exe, f"-t{spec.threads}", f"-c{spec.connections}", "-d", _duration_arg(spec.duration),
                "--latency", "--timeout", "5s", "-s", str(script)]
        if not spec.keepalive:
            argv += ["-H", "Connection: close"]
        argv.append(url)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=spec.duration + 60)
        except subprocess.TimeoutExpired as e:
            raise LoadError(f"wrk did not finish: {e}") from None
    if r.returncode != 0:
        raise LoadError(f"wrk failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    curve: list[list[float]] = []
    for line in r.stdout.splitlines():
        if line.startswith("VSBENCH-CURVE "):
            curve = json.loads(line[len("VSBENCH-CURVE "):])
    for line in r.stdout.splitlines():
        if line.startswith(_MARK):
            d = json.loads(line[len(_MARK):])
            dur = d["duration_us"] / 1e6
            return LoadResult(
                latency_curve_us=curve,
                tool="wrk",
                requests=int(d["requests"]),
                duration_s=dur,
                requests_per_s=d["requests"] / dur if dur > 0 else 0.0,
                bytes=int(d["bytes"]),
                errors={k: int(v) for k, v in d["errors"].items()},
                latency_us={k: float(v) for k, v in d["latency_us"].items()},
            )
    return parse_wrk_text(r.stdout)


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _to_us(value: str, unit: str) -> float:
    return float(value) * _UNITS_US[unit]


def parse_wrk_text(text: str) -> LoadResult:
    """Parse wrk's human output (``--latency``): totals, Requests/sec, the percentile table."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),\s+([\d.]+)(B|KB|MB|GB)? read", text)
    if not m:
        raise LoadError(f"cannot parse wrk output:\n{text}")
    requests = int(m.group(1))
    duration = float(m.group(2)) * _UNITS_S[m.group(3)]
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    rps = float(rps_m.group(1)) if rps_m else (requests / duration if duration else 0.0)
    lat: dict[str, float] = {}
    for pct, val, unit in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        key = "p" + (pct.rstrip("0").rstrip(".") if "." in pct else pct)
        lat[key] = _to_us(val, unit)
    mean = re.search(r"Latency\s+([\d.]+)(us|ms|s|m)\s+([\d.]+)(us|ms|s|m)\s+([\d.]+)(us|ms|s|m)", text)
    if mean:
        lat["mean"] = _to_us(mean.group(1), mean.group(2))
        lat["max"] = _to_us(mean.group(5), mean.group(6))
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if se:
        errors.update(connect=int(se.group(1)), read=int(se.group(2)), write=int(se.group(3)),
                      timeout=int(se.group(4)))
    st = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if st:
        errors["status"] = int(st.group(1))
    return LoadResult(tool="wrk", requests=requests, duration_s=duration, requests_per_s=rps,
                      errors=errors, latency_us=lat)


def _run_builtin(url: str, spec: LoadSpec, python: str) -> LoadResult:
    argv = [python, str(HERE / "loadgen.py"), "--url", url, "--connections", str(spec.connections),
            "--duration", str(spec.duration)]
    if not spec.keepalive:
        argv.append("--close")
    if spec.rate:
        argv += ["--rate", str(spec.rate)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=spec.duration + 60)
    except subprocess.TimeoutExpired as e:
        raise LoadError(f"built-in load generator did not finish: {e}") from None
    if r.returncode != 0:
        raise LoadError(f"built-in load generator failed ({r.returncode}): {r.stderr.strip()}")
    try:
        d = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LoadError(f"built-in load generator printed no JSON: {r.stdout!r} {r.stderr!r}") from None
    return LoadResult(
        tool="builtin",
        requests=int(d["requests"]),
        duration_s=float(d["duration_s"]),
        requests_per_s=float(d["requests_per_s"]),
        bytes=int(d.get("bytes", 0)),
        errors={k: int(v) for k, v in d["errors"].items()},
        latency_us={k: float(v) for k, v in d["latency_us"].items()},
        latency_curve_us=d.get("latency_curve_us", []),
        mode=d.get("mode", "closed-loop"),
    )

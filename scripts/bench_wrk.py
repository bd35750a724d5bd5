"""Driving ``wrk`` (Debian's HTTP load generator) from the benchmark scripts,
and reading a server's CPU time from /proc: CPU per request is steadier than
requests/s on a shared, noisy machine."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import NamedTuple, Sequence


class WrkRun(NamedTuple):
    """One wrk run: requests per second, and the servers' CPU time per request."""

    rate: float
    cpu_us: float


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, script: Path, seconds: int, connections: int, *, threads: int = 1, pids: Sequence[int] = ()
) -> WrkRun:
    """Load ``url`` with ``wrk`` and its Lua ``script``; CPU is summed over
    the server processes ``pids`` (0 when none are given).

    Raises:
        SystemExit: wrk saw non-2xx replies or socket errors.
    """
    before = sum(process_cpu_seconds(pid) for pid in pids)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = sum(process_cpu_seconds(pid) for pid in pids) - before
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors against {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return WrkRun(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), cpu / requests * 1e6)

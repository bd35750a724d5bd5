"""Running ``idnode demo`` (the README's main job) as a real process in tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from scripts.node_process import IDNODE, START_TIMEOUT


def wait_until_answering(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT} s")


def interrupt(process: subprocess.Popen) -> int:
    """Ctrl-C: SIGINT, then the exit status (SIGKILL after 30 s, failing the test)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the process did not stop on SIGINT") from None


def four_free_ports() -> int:
    """A port P such that P..P+3 are free on loopback now."""
    for _ in range(100):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + 4):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no four consecutive free ports")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return orjson.loads(reply.read())


def start_demo(data: Path, logs: Path, samples: int) -> tuple[subprocess.Popen, int, Path]:
    """``idnode demo`` on four free ports; the process, its port and its log."""
    for attempt in range(3):  # another process may take one of the ports between the check and the start
        port = four_free_ports()
        log = logs / f"demo-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*IDNODE, "demo", "--data", str(data), "--port", str(port), "--samples", str(samples)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            wait_until_answering(f"http://127.0.0.1:{port}/healthz", process, log)
            return process, port, log
        except RuntimeError:
            if process.poll() is None:
                interrupt(process)
            if "cannot start the demo" not in log.read_text(errors="replace") or attempt == 2:
                raise
    raise AssertionError("unreachable")

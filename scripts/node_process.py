"""Run a real node as a subprocess on a free loopback port: for tests that
need a separate process (crash tests, synchronous clients, the CLI) and for
benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Seconds a node may take to start answering.
START_TIMEOUT = 30

IDNODE = [sys.executable, "-m", "scripts.idnode"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``idnode ARGS`` to completion and capture its output."""
    return subprocess.run([*IDNODE, *args], cwd=cwd, env={**os.environ, **(env or {})}, input=input, capture_output=True, timeout=300)


class NodeProcess:
    """``idnode serve`` on ``data_dir``; start(), kill(), stop()."""

    def __init__(self, data_dir: Path, port: int | None = None, *, tls: tuple[Path, Path] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> NodeProcess:
        log = self.data_dir / f"serve-{self.port}.log"
        with open(log, "ab") as out:  # the child keeps its own descriptor
            tls_args = ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])] if self.tls else []
            self.process = subprocess.Popen(
                [*IDNODE, "serve", "--data", str(self.data_dir), "--port", str(self.port), *tls_args],
                stdout=out, stderr=subprocess.STDOUT,
            )
        probe_tls = None
        if self.tls:  # the readiness probe asks whether the node answers, not who it is
            probe_tls = ssl.create_default_context()
            probe_tls.check_hostname = False
            probe_tls.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(self.url + "/api/prefixes", timeout=1, context=probe_tls):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"node did not answer on {self.url} within {START_TIMEOUT}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the power goes."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGINT, as Ctrl-C: the node finishes and closes its store."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MirrorProcess(NodeProcess):
    """``idnode mirror`` of ``primary`` on ``data_dir``; start(), kill(), stop().

    Ready once ``GET /api/mirror`` answers; :meth:`status` reads it.
    """

    def __init__(
        self,
        data_dir: Path,
        primary: str,
        *,
        batch: int | None = None,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        cacert: Path | None = None,
    ) -> None:
        super().__init__(data_dir, port, tls=tls)
        self.primary = primary
        self.batch = batch
        self.cacert = cacert

    def start(self) -> MirrorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / f"mirror-{self.port}.log"
        options = ["--batch", str(self.batch)] if self.batch else []
        if self.tls:
            options += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        if self.cacert:
            options += ["--cacert", str(self.cacert)]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*IDNODE, "mirror", "--primary", self.primary, "--data", str(self.data_dir), "--port", str(self.port),
                 "--poll", "0.05", *options],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mirror exited with {self.process.returncode}; see {log}")
            try:
                self.status()
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mirror did not answer on {self.url} within {START_TIMEOUT}s")

    def status(self) -> dict:
        """The mirror's ``GET /api/mirror`` reply (over HTTPS, trusting its own certificate)."""
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        with urllib.request.urlopen(self.url + "/api/mirror", timeout=2, context=context) as reply:
            return json.loads(reply.read())

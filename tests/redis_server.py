"""A throwaway ``redis-server`` for tests that need a real one.

:class:`RedisServer` runs the Debian ``redis-server`` binary on a free
loopback port, without persistence, so tests never touch a Redis the
machine may run on 6379. It can be killed (SIGKILL, as a crash would) or
frozen (SIGSTOP, as a hung host would) and brought back on the same port,
which is what outage tests of a client need.

It speaks just enough RESP over a plain socket (``PING``, ``FLUSHALL``) to
know the server is ready, so it needs no Redis client and leaks none.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

#: How long a starting server may take to answer PING: it is up in
#: milliseconds, but a loaded CI machine can be slow to schedule it.
START_TIMEOUT_SECONDS = 10.0

#: How long one helper command may wait for its reply.
COMMAND_TIMEOUT_SECONDS = 2.0

#: Pause between PINGs while waiting for a starting server.
POLL_INTERVAL_SECONDS = 0.02

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process on a fixed loopback port.

    The port is chosen once, so :meth:`start` after :meth:`stop` brings the
    server back where clients expect it (empty: nothing is persisted).
    Use as a context manager, or call :meth:`close`, so the process is
    always reaped.
    """

    def __init__(self, binary: str, workdir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (a no-op when it runs) and wait until it answers PING.

        Raises:
            RuntimeError: it exited or did not answer within
                :data:`START_TIMEOUT_SECONDS`; the message holds its log.
        """
        if self.running:
            return
        self._reap()
        log_path = self.workdir / "redis.log"
        argv = [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.workdir), "--logfile", str(log_path)]
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {_tail(log_path)}")
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}: {_tail(log_path)}")
            time.sleep(POLL_INTERVAL_SECONDS)

    def stop(self) -> None:
        """Kill the server with SIGKILL, as a crash would: no goodbye to clients."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._reap()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel
        but never answered, as with a hung host."""
        if self.running and not self._paused:
            os.kill(self._process.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if self.running and self._paused:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def ensure_running(self) -> None:
        """Bring the server back from whatever a test left it in."""
        self.resume()
        self.start()

    def command(self, *args: str) -> bytes:
        """Send one command, return its first reply line (``+OK``, ``+PONG``).

        Only for commands with one-line replies; raises OSError when the
        server cannot be reached.
        """
        request = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args
        )
        with socket.create_connection((HOST, self.port), timeout=COMMAND_TIMEOUT_SECONDS) as conn:
            conn.sendall(request)
            with conn.makefile("rb") as reader:
                return reader.readline().rstrip(b"\r\n")

    def flushall(self) -> None:
        """Empty every database."""
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def close(self) -> None:
        """Stop the server for good."""
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _reap(self) -> None:
        # wait() sets returncode, so Popen's destructor has nothing to warn about.
        if self._process is not None:
            self._process.wait()
            self._process = None
        self._paused = False


def _tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

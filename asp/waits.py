"""Waits on the other members of a cluster (Ray's head, TF_CONFIG's workers) that always end: at a
time limit (``$ASP_CLUSTER_WAIT``, naming what was waited for) or at SIGTERM / Ctrl-C, also while
the wait is inside native code."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

from asp.errors import ASPError

CLUSTER_WAIT = 300.0  # s a command waits for the other members of a cluster (ASP_CLUSTER_WAIT)


@contextlib.contextmanager
def native_wait(message: str, limit: float) -> Iterator[None]:
    """Bounds a wait inside native code (Ray's GCS retries), where a Python signal handler runs only
    once the call returns: a watcher thread ends the process with ``error: <message>`` (exit 2)
    after ``limit`` seconds, or at SIGTERM / Ctrl-C (exit 143 / 130), seen through the wakeup fd of
    Python's C signal handler. Nothing is written before the wait ends, so there is nothing to
    clean up. Outside the main thread it only runs the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    old = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + limit
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"error: {message}", file=sys.stderr, flush=True)
                os._exit(2)
            if select.select([read], [], [], min(left, 0.2))[0] and not done.is_set():
                got = os.read(read, 64)
                if signal.SIGTERM in got or signal.SIGINT in got:
                    term = signal.SIGTERM in got
                    print("terminated" if term else "interrupted", file=sys.stderr, flush=True)
                    os._exit(143 if term else 130)

    watcher = threading.Thread(target=watch, name="asp-native-wait", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old)
        watcher.join()
        os.close(read)
        os.close(write)


def wait_limit() -> float:
    """Seconds a command waits for the other members of a cluster (Ray's head, TF_CONFIG's
    workers): ``$ASP_CLUSTER_WAIT``, default ``CLUSTER_WAIT``."""
    text = os.environ.get("ASP_CLUSTER_WAIT", "")
    try:
        value = float(text) if text else CLUSTER_WAIT
    except ValueError:
        value = -1.0
    if not (value > 0 and value < float("inf")):
        raise ASPError(f"ASP_CLUSTER_WAIT must be a number of seconds > 0, got {text!r}")
    return value


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
    except (OSError, ValueError):
        return False
    return True


def wait_for_peers(peers: list[str], own: str | None, *, what: str, fix: str, limit: float | None = None) -> None:
    """Waits, in Python (so SIGTERM and Ctrl-C end it at once, with cleanup), until every
    ``host:port`` of ``peers`` accepts a connection, at most ``limit`` seconds (``wait_limit()``).
    While it waits it listens on ``own``'s port (its own address in the cluster), so that peers
    waiting the same way see it; the port is free again when this returns.

    Raises:
        ASPError: a peer did not answer within the limit, naming the addresses waited for; or
            ``own``'s port is taken by another process.
    """
    limit = wait_limit() if limit is None else limit
    listener = None
    if own is not None:
        listener = socket.socket(socket.AF_INET6 if own.startswith("[") else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("", int(own.rpartition(":")[2])))
            listener.listen(16)
        except OSError as err:
            listener.close()
            raise ASPError(
                f"{own}, this process's address among the {what}, is in use by another process ({err.strerror}); {fix}"
            ) from None
    try:
        deadline = time.monotonic() + limit
        waiting = list(peers)
        while waiting:
            waiting = [a for a in waiting if not _answers(a)]
            if not waiting:
                break
            if time.monotonic() >= deadline:
                raise ASPError(
                    f"waited {limit:g} s for the {what} at {', '.join(waiting)}, which did not answer; {fix} "
                    "(ASP_CLUSTER_WAIT sets the wait in seconds)"
                )
            time.sleep(0.5)
    finally:
        if listener is not None:
            listener.close()

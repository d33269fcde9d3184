"""Processes the tests start: each in a process group of its own, stopped with everything it started
however the test ends (passed, failed, timed out), and none left when the suite ends.

Timeouts are sized for a busy 2-core machine (a training run beside the suite), never for a quiet one:
a test must not fail because the machine is doing other work, and a hung process must still not stall
CI. MNIST_CNN_TEST_TIMEOUT_SCALE multiplies them all (a slower machine: 2; proving that a timed-out
test leaves nothing behind: 0.01).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

SCALE = float(os.environ.get("MNIST_CNN_TEST_TIMEOUT_SCALE", "1"))
# seconds: a server's start or clean stop (the demo imports Gradio and torch, a few seconds when quiet)
SERVER = 120 * SCALE
# seconds: one command that trains for a few batches, or builds and installs a wheel
COMMAND = 600 * SCALE
STOP_GRACE = 10  # seconds a group has to end after SIGTERM before SIGKILL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's whole group, then SIGKILL to whatever is left of it after STOP_GRACE."""
    for signum, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break  # the group is gone
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(process.pid):
            process.poll()  # reaps the leader, so that a zombie does not count as alive
            time.sleep(0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies excepted)."""
    return any(state != "Z" for state in _group_states(pgid))


def _group_states(pgid: int) -> list[str]:
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields: state, ppid, pgrp, ...
            states.append(fields[0])
    return states


def popen(args, **kwargs) -> subprocess.Popen:
    """subprocess.Popen in a new session, so that stop_group reaches its children too."""
    return subprocess.Popen([str(a) for a in args], start_new_session=True, **kwargs)


@contextlib.contextmanager
def started(args, **kwargs):
    """A process for the length of the block, its group stopped when the block ends, however it ends."""
    process = popen(args, **kwargs)
    try:
        yield process
    finally:
        stop_group(process)


def run(args, timeout: float = COMMAND, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(capture_output=True, text=True) in a new session; on timeout the whole group is
    stopped (subprocess.run would kill the child alone, leaving what it started) and TimeoutExpired raised."""
    with started(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as process:
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for(url: str) -> None:
    """Until `url` answers 200: a server this test started is up. Fails after SERVER seconds."""
    deadline = time.monotonic() + SERVER
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {SERVER:.0f} s"
        time.sleep(0.3)


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process below `pid` (zombies excepted)."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        states[child] = fields[0]
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        if states.get(p) != "Z":
            try:
                command = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found.append((p, command.strip()))
    return found


def adopt_orphans() -> bool:
    """Makes this process the one that orphans below it are handed to (Linux's child subreaper), so that a
    process whose parent ended is still found by descendants(). False where the system has no such thing."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def leftovers(grace: float = STOP_GRACE) -> list[tuple[int, str]]:
    """The processes still running below this one after `grace` seconds; each is then killed."""
    deadline = time.monotonic() + grace
    while (left := descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left

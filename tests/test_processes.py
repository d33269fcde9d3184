"""The tests' own process handling (tests/processes.py): a test that times out or fails leaves nothing running."""

import os
import subprocess
import sys
import time

import processes
import pytest

# A child that starts a grandchild, writes both pids, and then both sleep far longer than any test may wait.
FAMILY = """
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
time.sleep(600)
"""


def family_pids(path, deadline: float = processes.SERVER) -> list[int]:
    end = time.monotonic() + deadline
    while not (path.exists() and len(path.read_text().split()) == 2):
        assert time.monotonic() < end, "the child did not start its grandchild"
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_command_that_times_out_is_stopped_with_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        processes.run([sys.executable, "-c", FAMILY, pids], timeout=3)
    assert time.monotonic() - started < 3 + 2 * processes.STOP_GRACE
    assert not [pid for pid in family_pids(pids, 0) if alive(pid)]


def test_a_block_that_fails_stops_its_process_group(tmp_path):
    pids = tmp_path / "pids"
    with pytest.raises(AssertionError, match="the test failed here"):
        with processes.started([sys.executable, "-c", FAMILY, pids]):
            family = family_pids(pids)
            assert all(alive(pid) for pid in family)
            raise AssertionError("the test failed here")
    assert not [pid for pid in family if alive(pid)]


def test_descendants_are_found_below_this_process(tmp_path):
    pids = tmp_path / "pids"
    with processes.started([sys.executable, "-c", FAMILY, pids]):
        child, grandchild = family_pids(pids)
        found = {pid for pid, _ in processes.descendants(os.getpid())}
        assert {child, grandchild} <= found

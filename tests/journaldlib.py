"""A private, real systemd-journald for the tests (systemd.md §6.1), in a mount
namespace of its own made by tests/journald_ns.sh: tmpfs on /run and /var/log/journal,
so the host's journal and sockets are neither seen nor touched. Programs and journalctl
run next to it through `nsenter --target PID --mount`; pytest's tmp_path is shared.

Needs root and the Debian packages systemd (systemd-journald, journalctl) and
util-linux (unshare, nsenter); without them the tests fail, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import OUR_BIN, SYSTEM_BIN as BIN, alive, require_journald, wait_until

JOURNALD_NS = Path(__file__).resolve().parent / "journald_ns.sh"
MULTILOG = str(OUR_BIN / "multilog")


def require_tools() -> None:
    require_journald("the journal tests")


class Journald:
    """A private journald; commands run next to it through nsenter."""

    def __init__(self, holder: subprocess.Popen[bytes], holder_pid: int, journald_pid: int):
        self.holder = holder            # journald_ns.sh, then (same pid) unshare and sh
        self.holder_pid = holder_pid    # the process keeping the namespace open (cat)
        self.journald_pid = journald_pid

    def argv(self, argv: list[str], cwd: Path | str = "/") -> list[str]:
        return [BIN["nsenter"], f"--target={self.holder_pid}", "--mount", f"--wd={cwd}",
                "--", *argv]

    def run(self, argv: list[str], cwd: Path | str = "/", stdin: bytes | None = None,
            timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.argv(argv, cwd), input=stdin, capture_output=True,
                              timeout=timeout)

    def multilog(self, cwd: Path, *script: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        """multilog SCRIPT... run in `cwd` inside the namespace: must succeed silently."""
        cp = self.run([MULTILOG, *script], cwd=cwd, stdin=stdin)
        assert (cp.returncode, cp.stdout, cp.stderr) == (0, b"", b""), (script, cp)
        return cp

    def sync(self) -> None:
        cp = self.run([BIN["journalctl"], "--sync"], timeout=10)
        assert cp.returncode == 0, cp

    def entries(self, *matches: str) -> list[dict]:
        """`journalctl --all -o json MATCHES`, decoded, oldest first."""
        cp = self.run([BIN["journalctl"], "--no-pager", "--all", "-o", "json", *matches])
        assert cp.returncode in (0, 1), cp  # 1: no entries at all yet
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def wait_entries(self, count: int, *matches: str, timeout: float = 10) -> list[dict]:
        """The entries matching, once there are at least `count` (sync first, then poll)."""
        self.sync()
        found: list[dict] = []

        def enough() -> bool:
            found[:] = self.entries(*matches)
            return len(found) >= count
        try:
            wait_until(enough, timeout=timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(f"journalctl {' '.join(matches)}: {len(found)} entries "
                                 f"after {timeout} s, expected {count}: "
                                 f"{[e.get('MESSAGE') for e in found]}") from None
        return found


@contextlib.contextmanager
def private_journald() -> Iterator[Journald]:
    """journald_ns.sh holding a namespace open (with `cat`) until we close its stdin;
    it then stops its journald by pid. Killed as a session if it does not end."""
    require_tools()
    holder = subprocess.Popen(
        [str(JOURNALD_NS), "--", "/bin/sh", "-c", 'echo "$$ $JOURNALD_PID"; exec cat >/dev/null'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    journald_pid = 0
    try:
        assert holder.stdout is not None
        first = holder.stdout.readline()
        if not first:
            err = holder.stderr.read() if holder.stderr else b""
            holder.wait(timeout=10)
            pytest.fail(f"journald_ns.sh did not start journald (exit {holder.returncode}): "
                        f"{err.decode(errors='replace').strip()}", pytrace=False)
        holder_pid, journald_pid = map(int, first.split())
        assert alive(journald_pid)
        yield Journald(holder, holder_pid, journald_pid)
    finally:
        if holder.stdin:
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(holder.pid, signal.SIGKILL)  # the session we started, journald in it
            holder.wait(timeout=10)
        for stream in (holder.stdout, holder.stderr):
            if stream:
                stream.close()
        if journald_pid:
            wait_until(lambda: not alive(journald_pid), timeout=5,
                       message=f"journald (pid {journald_pid}) to be gone")


@pytest.fixture(scope="module")
def jd() -> Iterator[Journald]:
    """One journald for the module; each test uses identifiers of its own."""
    with private_journald() as journald:
        yield journald

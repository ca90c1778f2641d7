"""The shipped systemd files: systemd-units/pysvscan.service and pysvscan.conf
(systemd.md §4.1, §4.5, §4.8, §6.3).

`systemd-analyze verify` runs through tests/verify_units.sh, in a private mount
namespace, with pysvscan's svscan at /usr/bin/svscan through an overlay: the host's
/run and /usr/bin are not touched, and the check does not depend on what /usr/bin
holds. Any output at all is a failure (systemd-analyze only warns about unknown keys
and bad values). The tmpfiles entry is applied to a scratch root.

Needs root and the Debian packages systemd (systemd-analyze, systemd-tmpfiles),
util-linux and mount; without them the tests fail, saying so.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import OUR_BIN

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd-units"
SERVICE = UNITS / "pysvscan.service"
SUPERVISE = UNITS / "pysvscan-supervise@.service"
TMPFILES = UNITS / "pysvscan.conf"
VERIFY = Path(__file__).resolve().parent / "verify_units.sh"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def tool(name: str, package: str) -> str:
    found = shutil.which(name, path=SYSTEM_PATH)
    if found is None or os.geteuid() != 0:
        pytest.fail(f"checking the systemd units needs root and {name} (Debian package "
                    f"{package}); install it, and run as root", pytrace=False)
    return found


def verify(*units: Path) -> subprocess.CompletedProcess[str]:
    for name, package in (("systemd-analyze", "systemd"), ("unshare", "util-linux"),
                          ("mount", "mount")):
        tool(name, package)
    cp = subprocess.run([str(VERIFY), str(OUR_BIN), *map(str, units)],
                        capture_output=True, text=True, timeout=60,
                        env={"PATH": SYSTEM_PATH})
    if cp.returncode == 125:
        pytest.fail(cp.stderr.strip(), pytrace=False)
    return cp


def settings(unit: Path) -> dict[str, list[str]]:
    """`Section.Key` -> values, in order (systemd's syntax, simple enough here)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def test_service_unit_verifies_silently() -> None:
    cp = verify(SERVICE)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")


def test_supervise_template_verifies_silently(tmp_path: Path) -> None:
    """A template is verified as an instance of it, as systemd would load it."""
    instance = tmp_path / "pysvscan-supervise@hello.service"
    shutil.copy(SUPERVISE, instance)
    cp = verify(instance)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")


def test_supervise_template_settings() -> None:
    """Issue 9: supervise is the notifying main process; the rest as pysvscan.service."""
    s = settings(SUPERVISE)
    expected = {
        "Service.Type": ["notify"], "Service.NotifyAccess": ["main"],
        "Service.ExecStart": ["/usr/bin/supervise /etc/service/%I"],
        "Service.WatchdogSec": ["30s"], "Service.KillMode": ["mixed"],
        "Service.Restart": ["always"], "Service.OOMPolicy": ["continue"],
        "Service.SyslogIdentifier": ["%I"], "Install.WantedBy": ["multi-user.target"],
    }
    assert {k: s.get(k) for k in expected} == expected


def test_verify_catches_what_systemd_only_warns_about(tmp_path: Path) -> None:
    """The check is worth something: a bad value is only a warning (exit 0) for
    systemd-analyze, and verify_units.sh fails on it."""
    broken = tmp_path / "pysvscan.service"
    broken.write_text(SERVICE.read_text().replace("WatchdogSec=30s", "WatchdogSec=banana"))
    cp = verify(broken)
    assert cp.returncode == 1 and "banana" in cp.stdout


def test_service_unit_settings() -> None:
    """The decisions of systemd.md §4.1 and the task: each one is load-bearing."""
    s = settings(SERVICE)
    expected = {
        "Service.Type": ["notify"], "Service.NotifyAccess": ["main"],
        "Service.ExecStart": ["/usr/bin/svscan /etc/service"],
        "Service.ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Service.WatchdogSec": ["30s"], "Service.KillMode": ["mixed"],
        "Service.OOMPolicy": ["continue"], "Service.TasksMax": ["infinity"],
        "Service.LogRateLimitIntervalSec": ["0"], "Service.Restart": ["always"],
        "Service.TimeoutStopSec": ["90s"], "Service.Delegate": ["no"],
        "Unit.ConditionPathIsDirectory": ["/etc/service"],
        "Install.WantedBy": ["multi-user.target"],
    }
    assert {k: s.get(k) for k in expected} == expected
    # no sandboxing: it would be inherited by every supervised service (§4.4)
    assert not [k for k in s if k.split(".")[1].startswith(
        ("Protect", "Private", "Restrict", "NoNewPrivileges", "SystemCall", "Capability",
         "MemoryDenyWriteExecute", "DynamicUser", "LimitNOFILE", "MemoryMax", "CPUQuota"))]
    # the Documentation= pages exist in the project
    for page in s["Unit.Documentation"][0].split():
        name, section = page.removeprefix("man:").rstrip(")").split("(")
        assert (ROOT / "man" / f"{name}.{section}").is_file(), page


def test_tmpfiles_entry_creates_run_pysvscan(tmp_path: Path) -> None:
    tmpfiles = tool("systemd-tmpfiles", "systemd")
    cp = subprocess.run([tmpfiles, "--create", f"--root={tmp_path}", str(TMPFILES)],
                        capture_output=True, text=True, timeout=30)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")
    for d in ("run/pysvscan", "run/pysvscan/notify"):
        st = (tmp_path / d).stat()
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
        assert (st.st_uid, st.st_gid) == (0, 0), d

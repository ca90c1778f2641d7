"""The man pages in man/: each formats without a single groff or man warning, has the
sections an operator looks for, and names its program where whatis/apropos read it.

Needs man-db (`man`, `lexgrog`) and groff-base (`groff`); without them these tests fail
(not skip), so that a missing package never passes unnoticed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

MAN_DIR = Path(__file__).resolve().parent.parent / "man"
PROGRAMS = [
    "supervise", "svscan", "svc", "svok", "svstat", "svscanboot", "readproctitle",
    "fghack", "pgrphack", "setuidgid", "envuidgid", "envdir", "softlimit", "setlock",
    "multilog", "tai64n", "tai64nlocal",
]
# Every page: one per program, and pysvscan(1) for the pysvscan command (a user
# command rather than an administration program, hence section 1).
SECTION = {"pysvscan": 1}
PAGES = PROGRAMS + ["pysvscan"]
REQUIRED_SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"]
DEBIAN_PACKAGES = "man-db groff-base"
# Every option each page must document in its OPTIONS section.
OPTION_LETTERS = {
    "svc": "udopchaitkx",
    "softlimit": "acdflmoprst",
    "setlock": "nNxX",
}


def require_tools() -> None:
    missing = [tool for tool in ("man", "lexgrog", "groff") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the man page tests need the Debian "
                    f"packages {DEBIAN_PACKAGES} (apt-get install {DEBIAN_PACKAGES})",
                    pytrace=False)


def tool_env() -> dict[str, str]:
    """A fixed locale and width, and nothing from the caller's MANOPT, pager or roff setup."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LC_ALL": "C.UTF-8",
        "MANWIDTH": "80",
        "MANPAGER": "cat",
        "PAGER": "cat",
    }


def section(program: str) -> int:
    return SECTION.get(program, 8)


def page(program: str) -> Path:
    return MAN_DIR / f"{program}.{section(program)}"


def source(program: str) -> str:
    return page(program).read_text(encoding="ascii")


def sections(text: str) -> dict[str, str]:
    """Section name -> its source lines, from the .SH requests."""
    found: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith(".SH "):
            name = line[4:].strip().strip('"')
            found[name] = ""
        elif name is not None:
            found[name] += line + "\n"
    return found


def test_every_page_is_there() -> None:
    present = sorted(p.stem for p in MAN_DIR.glob("*.8"))
    assert [p for p in PROGRAMS if p not in present] == []
    assert [p for p in PAGES if not page(p).is_file()] == []


@pytest.mark.parametrize("program", PAGES)
def test_formats_without_warnings(program: str) -> None:
    """`man --warnings=w` turns on every groff warning (macro, escape, font, line
    breaking ...); any of them on stderr is a defect of the page."""
    require_tools()
    result = subprocess.run(
        ["man", "--warnings=w", "-E", "UTF-8", "-l", str(page(program))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=tool_env(), timeout=60,
    )
    assert result.stderr.decode(errors="replace") == ""
    assert result.returncode == 0


@pytest.mark.parametrize("program", PAGES)
def test_formats_for_utf8_device(program: str) -> None:
    require_tools()
    result = subprocess.run(
        ["man", "--warnings", "-Tutf8", "-l", str(page(program))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=tool_env(), timeout=60,
    )
    assert result.stderr.decode(errors="replace") == ""
    assert result.returncode == 0


@pytest.mark.parametrize("program", PAGES)
def test_name_line_for_whatis(program: str) -> None:
    """lexgrog reads the NAME section the way mandb does for whatis and apropos."""
    require_tools()
    result = subprocess.run(["lexgrog", str(page(program))], capture_output=True,
                            env=tool_env(), timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert f': "{program} - ' in result.stdout.decode()


@pytest.mark.parametrize("program", PAGES)
def test_structure(program: str) -> None:
    text = source(program)  # ASCII only: the pages use groff escapes for anything else
    lines = text.splitlines()
    assert re.fullmatch(
        rf'\.TH {program.upper()} {section(program)} \S+ "pysvscan [^"]+" "pysvscan"', lines[0])
    found = sections(text)
    assert [s for s in REQUIRED_SECTIONS if s not in found] == []
    assert list(found)[:3] == ["NAME", "SYNOPSIS", "DESCRIPTION"]
    assert list(found)[-1] == "SEE ALSO"
    name_lines = [ln for ln in found["NAME"].splitlines() if ln.strip()]
    assert len(name_lines) == 1
    assert re.fullmatch(rf"{program} \\- \S.*", name_lines[0])
    assert re.match(rf"\.B {program}$", found["SYNOPSIS"].splitlines()[0])
    # man(7) only; and no lines that groff would read differently from what they look like
    assert not [ln for ln in lines if re.match(r"\.(Dd|Dt|Os|Nm|Sh|Nd)\b", ln)]
    assert not [ln for ln in lines if ln.startswith(" ") or ln != ln.rstrip()]
    assert not [ln for ln in lines if ln == ""]


@pytest.mark.parametrize("program", sorted(OPTION_LETTERS))
def test_every_option_documented(program: str) -> None:
    options = sections(source(program))["OPTIONS"]
    tags = set(re.findall(r"^\.BI? \\-(\w)\b", options, flags=re.M))
    assert [c for c in OPTION_LETTERS[program] if c not in tags] == []


def test_exit_codes_of_the_odd_ones() -> None:
    """The codes that differ from the 0/100/111 rule are spelled out where they apply."""
    envdir = sections(source("envdir"))["EXIT STATUS"]
    assert "usage: envdir dir child" in envdir and "exits 111" in envdir
    svok = sections(source("svok"))["EXIT STATUS"]
    assert ".B 100\n" in svok and "No\n.B supervise\nis running" in svok
    for program in ("svc", "svstat"):
        assert ".B 0\n" in sections(source(program))["EXIT STATUS"]

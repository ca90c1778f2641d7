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


# -- pysvscan(1) against the program it documents -----------------------------------------

ROOT = MAN_DIR.parent


def pysvscan_help(*subcommand: str) -> str:
    """`pysvscan [SUBCOMMAND] --help` of the installed program (conftest's tree)."""
    from conftest import PY
    cp = subprocess.run([PY.bin("pysvscan"), *subcommand, "--help"], capture_output=True,
                        text=True, env={**tool_env(), "COLUMNS": "200"}, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def subcommands() -> list[str]:
    """The names under `Commands:` in `pysvscan --help`."""
    text = pysvscan_help().split("\nCommands:\n", 1)[1]
    return [m.group(1) for m in re.finditer(r"^  (\S+)", text, flags=re.M)]


def rendered(program: str) -> dict[str, str]:
    """The formatted page as man shows it, split at its section and subsection headings
    ("SYNOPSIS", "pysvscan status [name...]"), each body with its white space
    collapsed, so that a phrase is found whatever the line breaks and the adjusting."""
    require_tools()
    cp = subprocess.run(["man", "-E", "UTF-8", "-l", str(page(program))],
                        stdin=subprocess.DEVNULL, capture_output=True,
                        env={**tool_env(), "MANWIDTH": "200"}, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")
    text = cp.stdout.decode().translate({0x2010: "-", 0x2212: "-", 0x2018: "'", 0x2019: "'",
                                         0x201C: '"', 0x201D: '"'})
    found: dict[str, str] = {}
    name = ""
    for line in text.splitlines()[1:-1]:  # without the header and footer lines
        if re.match(r"(\S| {3}\S)", line):
            name = line.strip()
            found[name] = ""
        elif name:
            found[name] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in found.items()}


def subsection(parts: dict[str, str], subcommand: str) -> str:
    heads = [k for k in parts if k.split()[:2] == ["pysvscan", subcommand]]
    assert len(heads) == 1, f"no subsection 'pysvscan {subcommand} ...' under COMMANDS"
    return parts[heads[0]]


def test_pysvscan_page_has_every_subcommand() -> None:
    """Each subcommand of `pysvscan --help` has its SYNOPSIS line, its subsection
    under COMMANDS and its exit status; and the page has no subcommand the program
    lacks."""
    names = subcommands()
    assert {"status", "add", "remove", "logs", "wait", "doctor", "metrics", "completion",
            "demo"} <= set(names)
    parts = rendered("pysvscan")
    synopsis = re.findall(r"pysvscan (\w+)", parts["SYNOPSIS"])
    assert sorted(set(synopsis)) == sorted(names)
    documented = [k.split()[1] for k in parts if re.match(r"pysvscan \w+ ", k)]
    assert sorted(documented) == sorted(names)
    for name in names:
        subsection(parts, name)
        assert re.search(rf"\b{name}\b", parts["EXIT STATUS"]), name


def test_pysvscan_page_has_every_option_and_default() -> None:
    """Every option in a subcommand's --help is described in its subsection; every
    default the help shows is given there, or, for an option read from an environment
    variable, under ENVIRONMENT with that variable."""
    parts = rendered("pysvscan")
    for name in subcommands():
        help_text = pysvscan_help(name)
        options = help_text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
        text = subsection(parts, name)
        for entry in re.split(r"\n(?=  -)", options):
            flags = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", entry.split("  ", 2)[1])
            flags = [f for f in flags if f not in ("-h", "--help")]
            for flag in flags:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                    f"pysvscan {name} {flag}"
            shown = re.search(r"\[(?:env var: (\w+); )?default: ([^;\]]+)", " ".join(entry.split()))
            if shown:
                envvar, value = shown.groups()
                value = re.sub(r"\.0$", "", value)
                if envvar:
                    assert f"{envvar} " in parts["ENVIRONMENT"] or \
                        f"{envvar}," in parts["ENVIRONMENT"], envvar
                    assert value in parts["ENVIRONMENT"], (envvar, value)
                else:
                    assert f"default {value}" in text or f"{value} (the default)" in text, \
                        (name, flags, value)
    assert "NO_COLOR" in parts["ENVIRONMENT"]


def test_pysvscan_page_lists_every_metric() -> None:
    """The METRICS section names exactly the metrics pysvscan/metrics.py exposes (a
    counter family `x` is exposed as `x_total`)."""
    code = (ROOT / "pysvscan" / "metrics.py").read_text()
    exposed = {f"pysvscan_{n}" for n in re.findall(r'\bgauge\("(\w+)"', code)}
    exposed |= {f"pysvscan_{n}_total" for n in re.findall(r'\bcounter\("(\w+)"', code)}
    exposed |= set(re.findall(r'GaugeMetricFamily\("(pysvscan_\w+)"', code))
    exposed |= {f"{n}_total" for n in re.findall(r'CounterMetricFamily\("(pysvscan_\w+)"',
                                                  code)}
    assert len(exposed) >= 15
    metrics = sections(source("pysvscan"))["METRICS"]
    listed = set(re.findall(r"^\.B (pysvscan_\w+)$", metrics, flags=re.M))
    assert sorted(listed) == sorted(exposed)


def test_pysvscan_page_has_every_json_field() -> None:
    """Every field of `pysvscan status --json`, nested ones included, is under JSON
    OUTPUT."""
    from pysvscan import services
    state = services.ServiceState(
        "web", "/etc/service/web",
        last_exit=services.LastExit("exit", 1, 42, 0),
        log=services.LogTarget(True, ("/etc/service/web/log/main",), False))
    doc = services.as_json(state, 0)
    fields = {"version", "scandir", "services", *doc, *doc["last_exit"], *doc["log"]}
    text = rendered("pysvscan")["JSON OUTPUT"]
    assert [f for f in sorted(fields) if not re.search(rf"(?<![\w-]){f}(?![\w-])", text)] == []

"""Shell completion of `pysvscan` (completion/, made by `make completion`) and the help
of every subcommand."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY, make_service
from test_cli import pysvscan

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"bash": ROOT / "completion" / "pysvscan.bash",
           "zsh": ROOT / "completion" / "_pysvscan"}
SUBCOMMANDS = ["add", "completion", "demo", "doctor", "logs", "metrics", "remove",
               "status", "wait"]


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_committed_scripts_speak_the_programs_protocol(shell: str) -> None:
    """Not byte for byte: each click release words its scripts a little differently
    (the venv's is not Debian's). What matters is that the committed script asks the
    installed program, through the variable it answers to; the bash one is run below."""
    r = pysvscan("completion", shell)
    assert r.returncode == 0, r.stderr
    committed = SCRIPTS[shell].read_text()
    for text in (committed, r.stdout):
        assert "_PYSVSCAN_COMPLETE" in text and f"{shell}_complete" in text, (
            f"{SCRIPTS[shell]} is out of date: run `make completion`")
    if shell == "zsh":
        assert committed.startswith("#compdef pysvscan")


def bash_complete(line: str, env_path: str) -> list[str]:
    """What the committed bash script offers for `line` (its last word completed)."""
    words = line.split(" ")
    script = (f"source {SCRIPTS['bash']}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              "_pysvscan_completion pysvscan\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["/bin/bash", "--norc", "-c", script], capture_output=True, text=True,
                       timeout=30, env={"PATH": env_path})
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_bash_completes_subcommands_options_and_services(tmp_path: Path) -> None:
    make_service(tmp_path, "web", "#!/bin/sh\nexec sleep 1000\n",
                 log="#!/bin/sh\nexec cat\n")
    make_service(tmp_path, "worker", "#!/bin/sh\nexec sleep 1000\n")
    path = f"{PY.bindir}:/usr/bin:/bin"
    assert bash_complete("pysvscan st", path) == ["status"]
    assert set(bash_complete("pysvscan ", path)) >= set(SUBCOMMANDS)
    assert bash_complete("pysvscan wait --re", path) == ["--ready"]
    assert bash_complete(f"pysvscan status --scandir {tmp_path} w", path) == [
        "web", "web/log", "worker"]
    assert bash_complete(f"pysvscan logs --scandir {tmp_path} wo", path) == ["worker"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_an_example(command: str) -> None:
    r = pysvscan(command, "--help")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"Usage: pysvscan {command} ")
    examples = r.stdout[r.stdout.index("Example"):]
    assert re.search(rf"^\s+pysvscan {command}\b", examples, re.M), examples


def test_the_group_lists_every_subcommand() -> None:
    r = pysvscan("--help")
    assert r.returncode == 0
    listed = re.findall(r"^  (\w+)  ", r.stdout[r.stdout.index("Commands:"):], re.M)
    assert listed == SUBCOMMANDS


def test_usage_errors_are_one_line() -> None:
    for args in (["logs"], ["nosuchcommand"], ["status", "-x"], ["add", "web"],
                 ["completion", "tcsh"]):
        r = pysvscan(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, (args, r.stderr)

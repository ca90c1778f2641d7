"""envdir, envuidgid and setuidgid against the C reference (daemontools.md §1.4, §1.5,
§14-§16, §21.3).

Each scenario runs under a small, explicit environment. Most tests run once per tree
and compare with literal bytes the C produced; where the outcome depends on readdir
order (several files in one envdir), both trees run on the same directory and must
agree byte for byte. No output of ours may contain a Python traceback.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import C, PY, Tree, require_c_reference, write_script

PATH = "/bin:/usr/bin"
ENV = {"PATH": PATH}
ENV_BIN = "/usr/bin/env"
ID_BIN = "/usr/bin/id"
NOBODY = pwd.getpwnam("nobody")
NOBODY_ID = (f"uid={NOBODY.pw_uid}(nobody) gid={NOBODY.pw_gid}"
             f"({grp.getgrgid(NOBODY.pw_gid).gr_name}) "
             f"groups={NOBODY.pw_gid}({grp.getgrgid(NOBODY.pw_gid).gr_name})\n").encode()
Result = tuple[int, bytes, bytes]


def run(tree: Tree, program: str, *args: str | bytes | os.PathLike[str],
        env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """(exit code, stdout, stderr) of one program of `tree`, under ENV unless told."""
    words = [os.fsdecode(a) if isinstance(a, bytes) else a for a in args]
    cp = tree.run(program, *words, cwd=cwd, env=ENV if env is None else env)
    assert b"Traceback" not in cp.stdout + cp.stderr, (tree.name, program, cp.stderr)
    return cp.returncode, cp.stdout, cp.stderr


def fatal(program: str, text: str | bytes) -> Result:
    line = text if isinstance(text, bytes) else text.encode()
    return 111, b"", program.encode() + b": fatal: " + line + b"\n"


def same_in_both(scenario: Callable[[Tree], Result]) -> Result:
    """Run a scenario with the C reference and with ours; they must agree exactly."""
    require_c_reference()
    expected = scenario(C)
    assert scenario(PY) == expected
    return expected


def make_envdir(parent: Path, files: dict[str | bytes, bytes], name: str = "d") -> Path:
    d = parent / name
    d.mkdir()
    for fname, data in files.items():
        with open(os.path.join(os.fsencode(d), os.fsencode(fname)), "wb") as f:
            f.write(data)
    return d


def env_lines(env: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}\n".encode() for k, v in env.items())


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A scratch directory that nobody can reach (tmp_path lies under a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="pysvscan-envtools-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------------------------------
# envdir (§16)

@pytest.mark.parametrize("args", [(), ("d",)], ids=["no-args", "no-child"])
def test_envdir_usage_exits_111(tree: Tree, args: tuple[str, ...]) -> None:
    assert run(tree, "envdir", *args) == (111, b"", b"envdir: usage: envdir dir child\n")


VALUE_CASES = [
    ("first-line-only", b"one\ntwo\n", b"one"),
    ("no-final-newline", b"val", b"val"),
    ("trailing-blanks-cut", b"val \t \t\nmore \n", b"val"),
    ("leading-and-inner-blanks-kept", b" \tv a l", b" \tv a l"),
    ("cr-kept", b"val\r\n", b"val\r"),
    ("blanks-before-cr-kept", b"val \r\n", b"val \r"),
    ("nul-becomes-newline", b"a\0b\0\n", b"a\nb\n"),
    ("blanks-cut-before-nul-turns", b"a \0 \t\n", b"a \n"),
    ("newline-first-sets-empty", b"\nignored\n", b""),
    ("blanks-only-sets-empty", b" \t \n", b""),
    ("long-value-whole", b"x" * 300 + b"\nmore\n", b"x" * 300),
    ("bytes-not-utf8", b"\xff\xfe\n", b"\xff\xfe"),
    ("empty-file-removes", b"", None),
]


@pytest.mark.parametrize("data,value", [c[1:] for c in VALUE_CASES],
                         ids=[c[0] for c in VALUE_CASES])
def test_envdir_value(tree: Tree, tmp_path: Path, data: bytes, value: bytes | None) -> None:
    """One file NAME. The old NAME is removed by moving the last entry (Z) into its
    slot, and the new entry is appended (§1.5), so the order is the C's."""
    make_envdir(tmp_path, {"NAME": data})
    env = {"PATH": PATH, "NAME": "old", "Z": "z"}
    out = env_lines({"PATH": PATH, "Z": "z"})
    if value is not None:
        out += b"NAME=" + value + b"\n"
    assert run(tree, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path) == (0, out, b"")


@pytest.mark.parametrize("data,entry", [(b"val\n", b"E=F=val"), (b"", b"E=F")],
                         ids=["with-value", "empty"])
def test_envdir_name_is_not_validated(tree: Tree, tmp_path: Path, data: bytes,
                                      entry: bytes) -> None:
    """A file `E=F` edits variable E; even when empty, its name is appended as is."""
    make_envdir(tmp_path, {"E=F": data})
    env = {"PATH": PATH, "E": "old"}
    assert run(tree, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path) == (
        0, env_lines(ENV) + entry + b"\n", b"")


def test_envdir_bytes_name(tree: Tree, tmp_path: Path) -> None:
    make_envdir(tmp_path, {b"N\xff": b"v\xfe"})
    assert run(tree, "envdir", "d", ENV_BIN, cwd=tmp_path) == (
        0, env_lines(ENV) + b"N\xff=v\xfe\n", b"")


def test_envdir_skips_dot_files(tree: Tree, tmp_path: Path) -> None:
    d = make_envdir(tmp_path, {".hidden": b"h", "..two": b"t", "SHOWN": b"s"})
    (d / ".subdir").mkdir()  # a visible subdirectory would be fatal
    (d / ".dangling").symlink_to("nowhere")
    env = {"PATH": PATH, ".hidden": "kept"}  # the variable is left alone, too
    assert run(tree, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path) == (
        0, env_lines(env) + b"SHOWN=s\n", b"")


def test_envdir_many_files_same_environment_as_c(tmp_path: Path) -> None:
    """Order depends on readdir, so compare with the C on the very same directory."""
    files: dict[str | bytes, bytes] = {
        "NEW": b"new\n", "HOME": b"", "PATH2": b"\n", "USER": b"someone \t\r\n",
        "LANG": b"C\n", "A=B": b"c", "=x": b"v", "MULTI": b"l1\0l2\nl3",
        "EMPTY_UNSET": b"", b"B\xff": b"\xff", "LONG": b"y" * 300, ".dot": b"no",
    }
    for n in range(20):
        files[f"V{n}"] = f"value {n}\n".encode()
    os.mkfifo(make_envdir(tmp_path, files) / "FIFO")  # no writer: reads as empty
    env = {"PATH": PATH, "HOME": "/root", "USER": "root", "A": "a", "LANG": "C.UTF-8",
           "V3": "old", "FIFO": "fifo", "KEEP": "k", "Z": "last"}
    out = same_in_both(lambda t: run(t, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path))
    code, stdout, stderr = out
    expected = {b"PATH=" + PATH.encode(), b"USER=someone \t\r", b"LANG=C", b"NEW=new",
                b"PATH2=", b"A=B=c", b"=x=v", b"MULTI=l1", b"l2", b"B\xff=\xff",
                b"LONG=" + b"y" * 300, b"KEEP=k", b"Z=last"}
    expected |= {f"V{n}=value {n}".encode() for n in range(20)}
    assert (code, stderr) == (0, b"")
    assert sorted(stdout.split(b"\n")[:-1]) == sorted(expected)


BAD_ENTRIES = [
    ("subdirectory", "is a directory"),
    ("symlink-loop", "symbolic link loop"),
    ("socket", "device not configured"),
    ("fifo-with-writer-no-data", "temporary failure"),
    ("symlink-through-file", "not a directory"),
]


@pytest.mark.parametrize("kind,err", BAD_ENTRIES, ids=[c[0] for c in BAD_ENTRIES])
def test_envdir_unreadable_entry(tree: Tree, tmp_path: Path, kind: str, err: str) -> None:
    d = make_envdir(tmp_path, {})
    entry = d / "BAD"
    writer = None
    if kind == "subdirectory":
        entry.mkdir()
    elif kind == "symlink-loop":
        entry.symlink_to("BAD")
    elif kind == "socket":
        os.mknod(entry, stat.S_IFSOCK | 0o644)
    elif kind == "fifo-with-writer-no-data":
        os.mkfifo(entry)
        writer = os.open(entry, os.O_RDWR)  # a writer that never writes
    else:
        (tmp_path / "plain").write_bytes(b"x")
        entry.symlink_to("../plain/x")
    try:
        assert run(tree, "envdir", "d", "/bin/true", cwd=tmp_path) == fatal(
            "envdir", f"unable to read d/BAD: {err}")
    finally:
        if writer is not None:
            os.close(writer)


def test_envdir_fifo_without_writer_removes(tree: Tree, tmp_path: Path) -> None:
    os.mkfifo(make_envdir(tmp_path, {}) / "F")
    env = {"PATH": PATH, "F": "old"}
    assert run(tree, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path) == (
        0, env_lines(ENV), b"")


def test_envdir_lone_dangling_symlink_removes(tree: Tree, tmp_path: Path) -> None:
    """With nothing read before it, the C removes the variable too (§21.3)."""
    (make_envdir(tmp_path, {}) / "D").symlink_to("nowhere")
    env = {"PATH": PATH, "D": "old"}
    assert run(tree, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path) == (
        0, env_lines(ENV), b"")


def test_envdir_dangling_symlink_is_an_empty_file(tmp_path: Path) -> None:
    """§21.3: after another file the C passes on that file's value plus a newline;
    pysvscan removes the variable, whatever the readdir order (ours only)."""
    d = make_envdir(tmp_path, {"A": b"a\n", "B": b"b\n", "C": b"c"})
    (d / "D").symlink_to("nowhere")
    (d / "E").symlink_to("nowhere")
    env = {"PATH": PATH, "D": "old", "E": "old"}
    code, out, err = run(PY, "envdir", "d", ENV_BIN, env=env, cwd=tmp_path)
    assert (code, err) == (0, b"")
    assert sorted(out.split(b"\n")[:-1]) == [b"A=a", b"B=b", b"C=c", b"PATH=" + PATH.encode()]


BAD_DIRS = [
    ("missing", "nonexistent", "unable to switch to directory nonexistent: file does not exist"),
    ("plain-file", "plain", "unable to switch to directory plain: not a directory"),
    ("symlink-loop", "loop", "unable to switch to directory loop: symbolic link loop"),
    ("bytes-name", b"d\xff", b"unable to switch to directory d\xff: file does not exist"),
]


@pytest.mark.parametrize("dir,text", [c[1:] for c in BAD_DIRS], ids=[c[0] for c in BAD_DIRS])
def test_envdir_bad_directory(tree: Tree, tmp_path: Path, dir: str | bytes,
                              text: str | bytes) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    (tmp_path / "loop").symlink_to("loop")
    assert run(tree, "envdir", dir, "/bin/true", cwd=tmp_path) == fatal("envdir", text)


NOBODY_CASES = [
    ("file-mode-0600", "unable to read d/S: access denied"),
    ("dir-without-read", "unable to read directory d: access denied"),
    ("dir-without-search", "unable to switch to directory d: access denied"),
    ("cwd-unreadable", "unable to switch to current directory: access denied"),
]


@pytest.mark.parametrize("kind,text", NOBODY_CASES, ids=[c[0] for c in NOBODY_CASES])
def test_envdir_access_denied_as_nobody(tree: Tree, open_dir: Path, kind: str,
                                        text: str) -> None:
    """Root reads everything, so these run as nobody (through the tree's setuidgid)."""
    d = make_envdir(open_dir, {"S": b"secret\n"})
    cwd, dir = open_dir, "d"
    if kind == "file-mode-0600":
        (d / "S").chmod(0o600)
    elif kind == "dir-without-read":
        d.chmod(0o333)
    elif kind == "dir-without-search":
        d.chmod(0o666)
    else:
        cwd = open_dir / "cwd"
        cwd.mkdir(mode=0o311)
        cwd.chmod(0o311)
        dir = str(d)
    assert run(tree, "setuidgid", "nobody", tree.bin("envdir"), dir, "/bin/true",
               cwd=cwd) == fatal("envdir", text)


def test_envdir_searches_its_own_path(tree: Tree, open_dir: Path) -> None:
    """The child gets DIR's PATH, but the child is looked up in envdir's own PATH."""
    (open_dir / "bin").mkdir()
    write_script(open_dir / "bin" / "myprog", "#!/bin/sh\necho ran\n")
    make_envdir(open_dir, {"PATH": f"{open_dir}/bin\n".encode()})
    assert run(tree, "envdir", "d", "sh", "-c", 'echo "$PATH"', cwd=open_dir) == (
        0, f"{open_dir}/bin\n".encode(), b"")
    assert run(tree, "envdir", "d", "myprog", cwd=open_dir) == fatal(
        "envdir", "unable to run myprog: file does not exist")
    # envdir's PATH unset: /bin:/usr/bin, still not DIR's.
    assert run(tree, "envdir", "d", "sh", "-c", 'echo "$PATH"', env={}, cwd=open_dir) == (
        0, f"{open_dir}/bin\n".encode(), b"")


# ---------------------------------------------------------------------------------------
# Shared by all three: running the child (§1.4), what the child inherits.

LEAD = {"envdir": ("empty",), "setuidgid": ("nobody",), "envuidgid": ("nobody",)}
PROGRAMS = list(LEAD)

EXEC_CASES = [
    # id, PATH (None: unset), child, expected stdout or error text
    ("not-found", PATH, "nosuchprogram", "unable to run nosuchprogram: file does not exist"),
    ("absolute-missing", PATH, "/nonexistent/prog",
     "unable to run /nonexistent/prog: file does not exist"),
    ("not-executable", PATH, "./plain", "unable to run ./plain: access denied"),
    ("directory", PATH, "./sub", "unable to run ./sub: access denied"),
    ("no-shebang-no-sh-fallback", PATH, "./noshebang",
     "unable to run ./noshebang: exec format error"),
    ("empty-name", PATH, "", "unable to run : access denied"),
    ("eacces-remembered", "{d}/noexec:{d}/nonexistent", "myprog",
     "unable to run myprog: access denied"),
    ("eacces-then-found", "{d}/noexec:{d}/exec", "myprog", b"ran\n"),
    ("enoent-then-found", "{d}/nonexistent:{d}/exec", "myprog", b"ran\n"),
    ("enotdir-stops-search", "{d}/plain:/bin:/usr/bin", "true",
     "unable to run true: not a directory"),
    ("empty-element-is-cwd", "/nonexistent:", "cwdprog", b"cwd\n"),
    ("empty-path-is-cwd", "", "cwdprog", b"cwd\n"),
    ("unset-path-is-bin-usr-bin", None, "sh", b"sh\n"),
]


@pytest.fixture
def exec_dir(open_dir: Path) -> Path:
    """Programs to find or fail on, reachable by nobody (setuidgid runs them as nobody)."""
    (open_dir / "empty").mkdir()
    (open_dir / "sub").mkdir()
    (open_dir / "plain").write_text("echo plain\n")
    write_script(open_dir / "noshebang", "echo noshebang\n")
    write_script(open_dir / "cwdprog", "#!/bin/sh\necho cwd\n")
    (open_dir / "noexec").mkdir()
    (open_dir / "noexec" / "myprog").write_text("#!/bin/sh\necho noexec\n")
    (open_dir / "exec").mkdir()
    write_script(open_dir / "exec" / "myprog", "#!/bin/sh\necho ran\n")
    return open_dir


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("path,child,expected", [c[1:] for c in EXEC_CASES],
                         ids=[c[0] for c in EXEC_CASES])
def test_running_the_child(tree: Tree, exec_dir: Path, program: str, path: str | None,
                           child: str, expected: str | bytes) -> None:
    env = {} if path is None else {"PATH": path.format(d=exec_dir)}
    args = ("-c", "echo sh") if child == "sh" else ()
    want = (0, expected, b"") if isinstance(expected, bytes) else fatal(program, expected)
    assert run(tree, program, *LEAD[program], child, *args, env=env, cwd=exec_dir) == want


ENVIRONMENTS = [
    ("nothing", {}),
    ("path-only", ENV),
    ("lc-all-c", {"LC_ALL": "C", "PATH": PATH}),
    ("lang-c", {"LANG": "C"}),
    ("lc-ctype-c", {"LC_CTYPE": "C", "A": "1"}),
    ("lang-utf8", {"LANG": "C.UTF-8", "LC_ALL": "POSIX"}),
    ("login", {"HOME": "/root", "USER": "root", "LOGNAME": "root", "PATH": PATH}),
    ("pythonish", {"PYTHONPATH": "/nonexistent", "PYTHONIOENCODING": "latin-1"}),
]


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("env", [c[1] for c in ENVIRONMENTS], ids=[c[0] for c in ENVIRONMENTS])
def test_environment_reaches_child_unchanged(tree: Tree, open_dir: Path, program: str,
                                             env: dict[str, str]) -> None:
    """Only the documented edits: nothing of Python's locale coercion (PEP 538) etc."""
    (open_dir / "empty").mkdir()
    out = env_lines(env)
    if program == "envuidgid":
        out += f"GID={NOBODY.pw_gid}\nUID={NOBODY.pw_uid}\n".encode()
    assert run(tree, program, *LEAD[program], ENV_BIN, env=env, cwd=open_dir) == (0, out, b"")


@pytest.mark.parametrize("program", PROGRAMS)
def test_child_inherits_signals_and_descriptors(open_dir: Path, program: str) -> None:
    """An ignored SIGINT stays ignored, nothing else is ignored or blocked (Python's
    SIGPIPE, SIGXFSZ and SIGINT handling is undone), inherited descriptors
    pass through and nothing more is open. The child reports on itself: a shell's own
    mask changes while it forks."""
    (open_dir / "empty").mkdir()
    r, w = os.pipe()
    try:
        def scenario(tree: Tree) -> Result:
            out = b""
            for child in (["/bin/grep", "-E", "^Sig(Ign|Blk|Cgt)", "/proc/self/status"],
                          ["/bin/ls", "/proc/self/fd"]):
                argv = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh",
                        tree.bin(program), *LEAD[program], *child]
                cp = subprocess.run(argv, env=ENV, cwd=open_dir, capture_output=True,
                                    pass_fds=(w,), timeout=10)
                assert (cp.returncode, cp.stderr) == (0, b""), (tree.name, cp.stderr)
                out += cp.stdout
            return 0, out, b""
        out = same_in_both(scenario)[1]
    finally:
        os.close(r)
        os.close(w)
    # SIGINT ignored, nothing blocked (what grep catches itself is the same in both)
    assert out.startswith(b"SigBlk:\t0000000000000000\nSigIgn:\t0000000000000002\n")
    assert f"\n{w}\n".encode() in out


# ---------------------------------------------------------------------------------------
# setuidgid (§14) and envuidgid (§15)

@pytest.mark.parametrize("program", ["setuidgid", "envuidgid"])
@pytest.mark.parametrize("args", [(), ("nobody",)], ids=["no-args", "no-child"])
def test_uidgid_usage(tree: Tree, program: str, args: tuple[str, ...]) -> None:
    assert run(tree, program, *args) == (
        100, b"", f"{program}: usage: {program} account child\n".encode())


@pytest.mark.parametrize("program", ["setuidgid", "envuidgid"])
@pytest.mark.parametrize("account", [b"nosuchaccount", b"", b"-s", b"0", b"\xff"],
                         ids=["unknown", "empty", "option-like", "numeric", "not-utf8"])
def test_unknown_account(tree: Tree, program: str, account: bytes) -> None:
    assert run(tree, program, account, "/bin/true") == fatal(
        program, b"unknown account " + account)


def test_setuidgid_id_as_nobody(tree: Tree) -> None:
    assert run(tree, "setuidgid", "nobody", ID_BIN) == (0, NOBODY_ID, b"")


def test_setuidgid_drops_inherited_groups(tree: Tree) -> None:
    """setgroups([gid]): supplementary groups the caller had are gone."""
    kw = dict(env=ENV, capture_output=True, timeout=10, extra_groups=[4, 24])
    assert b",4(" in subprocess.run([ID_BIN], **kw).stdout  # the setup works
    cp = subprocess.run([tree.bin("setuidgid"), "nobody", ID_BIN], **kw)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, NOBODY_ID, b"")


def member_of_etc_group() -> pwd.struct_passwd | None:
    """An account listed as a member of some group other than its primary one."""
    for group in grp.getgrall():
        for name in group.gr_mem:
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            if pw.pw_gid != group.gr_gid:
                return pw
    return None


def test_setuidgid_ignores_etc_group(tree: Tree) -> None:
    pw = member_of_etc_group()
    if pw is None:
        pytest.skip("no account with /etc/group memberships on this system")
    assert run(tree, "setuidgid", pw.pw_name, ID_BIN, "-G") == (
        0, f"{pw.pw_gid}\n".encode(), b"")


def test_setuidgid_nested_cannot_setgid(tree: Tree) -> None:
    assert run(tree, "setuidgid", "nobody", tree.bin("setuidgid"), "nobody", ID_BIN) == fatal(
        "setuidgid", "unable to setgid: permission denied")


@pytest.mark.parametrize("cap,text", [("setgid", "unable to setgid: permission denied"),
                                      ("setuid", "unable to setuid: permission denied")])
def test_setuidgid_without_capability(tree: Tree, cap: str, text: str) -> None:
    setpriv = "/usr/bin/setpriv"
    if not os.access(setpriv, os.X_OK):
        pytest.skip("util-linux's setpriv is not installed")
    cp = subprocess.run([setpriv, f"--bounding-set=-{cap}", tree.bin("setuidgid"), "nobody",
                         ID_BIN], env=ENV, capture_output=True, timeout=10)
    assert (cp.returncode, cp.stdout, cp.stderr) == fatal("setuidgid", text)


def test_envuidgid_edits_in_c_order(tree: Tree) -> None:
    """GID then UID, each replacing the old entry by the last one (§1.5)."""
    env = {"GID": "1", "A": "2", "UID": "3", "B": "4", "C": "5"}
    assert run(tree, "envuidgid", "nobody", ENV_BIN, env=env) == (
        0, f"C=5\nA=2\nGID={NOBODY.pw_gid}\nB=4\nUID={NOBODY.pw_uid}\n".encode(), b"")


def test_envuidgid_other_account(tree: Tree) -> None:
    daemon = pwd.getpwnam("daemon")
    assert run(tree, "envuidgid", "daemon", ENV_BIN) == (
        0, env_lines(ENV) + f"GID={daemon.pw_gid}\nUID={daemon.pw_uid}\n".encode(), b"")


def test_envuidgid_keeps_ids(tree: Tree) -> None:
    mine = subprocess.run([ID_BIN], env=ENV, capture_output=True, timeout=10).stdout
    assert run(tree, "envuidgid", "nobody", ID_BIN) == (0, mine, b"")

"""One module per daemontools program; each exposes main(argv) -> exit code."""

"""The `fastloop` command: one subcommand per module, each with its own main(argv)."""

from __future__ import annotations

import importlib
import sys

__all__ = ["main"]

# subcommand -> (module, one-line help). Each module has main(argv: list[str]) -> int.
COMMANDS = {
    "demo": ("fastloop.demo", "run a demo server (the default with no subcommand)"),
    "serve": ("fastloop.serve", "serve an application: fastloop serve module:app"),
    "bench": ("fastloop.bench", "load-test an HTTP server, counting connections and errors"),
    "doctor": ("fastloop.doctor", "show what limits a load test on this machine"),
}


def usage() -> str:
    lines = ["usage: fastloop [--version] [COMMAND] [ARGS...]", "", "commands:"]
    lines += [f"  {name:8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`fastloop COMMAND --help` explains each one."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args and args[0] in ("-V", "--version"):
        from . import __version__
        print(f"fastloop {__version__}")
        return 0
    name = args.pop(0) if args and not args[0].startswith("-") else "demo"
    if name not in COMMANDS:
        print(f"fastloop: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(args) or 0)

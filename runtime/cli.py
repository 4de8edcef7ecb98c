"""`flightrec`: one command-line entry point whose subcommands are loaded lazily by name.

Why a table of "module:function" strings: `runtime` must never import `telemetry` (import-linter forbids it),
yet `flightrec migrate` and `flightrec logs` live there. Naming the module as a string and importing it only
when its subcommand is chosen keeps the dependency direction intact, keeps `flightrec --help` fast (it imports
nothing), and lets a package add a subcommand with one line in `SUBCOMMANDS`.

Each target is `configure(parser: argparse.ArgumentParser) -> None`: it adds its arguments and calls
`parser.set_defaults(run=<callable taking the parsed Namespace and returning an exit code>)`.

Allowed imports: stdlib only (subcommands are imported by name at run time).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class Subcommand:
    """Where a subcommand's parser comes from, and the one line `flightrec --help` shows for it."""

    target: str  # "package.module:function", imported only when the subcommand runs
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "emulator": Subcommand(
        "runtime.emulator.cli:configure_emulator", "serve the local Lambda emulator (Runtime API + invoke endpoint)"
    ),
    "invoke": Subcommand(
        "runtime.emulator.cli:configure_invoke", "invoke a handler once (or --repeat N) through the real runtime"
    ),
    "migrate": Subcommand("telemetry.migrate_cli:configure", "create or upgrade the logs table, roles and partitions"),
    "logs": Subcommand("telemetry.audit:configure", "audit the logs table: one request's records, filters, follow"),
    "partitions": Subcommand("telemetry.retention:configure", "create partitions ahead, drop expired ones whole"),
    "report": Subcommand("telemetry.report:configure", "error rate and latency charts for a time range, as HTML"),
    "package": Subcommand("runtime.package:configure", "build the deployment zip (or a layer) for a Lambda target"),
}

Configure = Callable[[argparse.ArgumentParser], None]


def load_target(target: str) -> Configure:
    """Import `module:function` and return the function; a broken entry is a programming error, said plainly."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"subcommand target {target!r} is not 'module:function'")
    module = importlib.import_module(module_name)
    configure: Configure = getattr(module, attribute)
    return configure


def build_parser(chosen: str | None, table: dict[str, Subcommand] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the `chosen` subcommand's module is imported to add its arguments."""
    subcommands = SUBCOMMANDS if table is None else table
    parser = argparse.ArgumentParser(
        prog="flightrec",
        description="lambda-flight-recorder: a custom AWS Lambda runtime for Python, and its tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, spec in subcommands.items():
        subparser = sub.add_parser(name, help=spec.summary, description=spec.summary)
        if name == chosen:
            load_target(spec.target)(subparser)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option: the subcommand's name (global options come before it)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None, table: dict[str, Subcommand] | None = None) -> int:
    """Parse `argv` (default: the process arguments), run the subcommand, return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    subcommands = SUBCOMMANDS if table is None else table
    chosen = _chosen(args_list)
    parser = build_parser(chosen if chosen in subcommands else None, subcommands)
    args = parser.parse_args(args_list)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

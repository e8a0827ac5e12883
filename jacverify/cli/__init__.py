"""The ``jacverify`` command line, one module per command.

* ``jacverify check MODEL.keras`` (:mod:`jacverify.cli.check`): check every backward rule of
  a saved model, print a per-layer table, write JSON and HTML reports; exit 0 (every rule
  passes), 1 (some rule is wrong, or a call has no rule) or 2 (a usage or input problem, said
  in one line on stderr);
* ``jacverify report RESULT.json`` (:mod:`jacverify.cli.report`): print and render a saved
  result again, exiting as ``check`` did;
* ``jacverify list`` (:mod:`jacverify.cli.listing`): the registered rules;
* ``jacverify example`` (:mod:`jacverify.cli.example`): the bundled example.

Commands are modules listed in :data:`COMMAND_MODULES`, each with ``register(subparsers,
common)`` adding its parser and setting ``func``; importing them is cheap (Keras and torch load
inside the handlers), so ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from jacverify.cli.common import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    first_line,
    hypothesis_plugins_off,
    require_torch_backend,
)
from jacverify.cli.inputs import check_model_file, import_rules, load_model
from jacverify.cli.process_end import end_quickly_at_exit, record_exit_status

os.environ.setdefault("KERAS_BACKEND", "torch")

__all__ = [
    "COMMAND_MODULES",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "check_model_file",
    "console_main",
    "import_rules",
    "load_model",
    "main",
]

#: The modules adding commands, in the order ``--help`` lists them. Each has
#: ``register(subparsers, common)``; a command defined elsewhere (e.g. an analysis package)
#: joins the command line by adding its module here.
COMMAND_MODULES = [
    "jacverify.cli.check",
    "jacverify.cli.report",
    "jacverify.cli.listing",
    "jacverify.cli.example",
    "jacverify.analysis.commands",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from jacverify import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--version", action="version", version=f"jacverify {__version__}")
    common.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
    parser = argparse.ArgumentParser(
        prog="jacverify",
        description="Build backward (Jacobian) models of Keras models and check their rules.",
        epilog="Exit status: 0 every rule passes, 1 some rule is wrong (or has no rule), 2 a "
        "usage or input problem, 3 an internal error. 'jacverify COMMAND --help' describes "
        "each command.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    command = f"jacverify {args.command}"
    try:
        require_torch_backend()
        with hypothesis_plugins_off():
            return args.func(args)
    except UsageError as error:
        if args.debug:
            traceback.print_exc()
        print(f"{command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - one line instead of a traceback
        if args.debug:
            traceback.print_exc()
        print(
            f"{command}: internal error: {type(error).__name__}: {first_line(str(error))} "
            "(--debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def console_main() -> None:
    """The ``jacverify`` command as a process (its console script, ``python -m
    jacverify.cli``): :func:`main`, then the process ends with its status without tearing down
    the modules it loaded (see :mod:`jacverify.cli.process_end`)."""
    end_quickly_at_exit()
    status = main()
    record_exit_status(status)
    sys.exit(status)

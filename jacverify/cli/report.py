"""``jacverify report RESULT.json``: print a saved result and render it again."""

from __future__ import annotations

import argparse
from pathlib import Path

from jacverify.cli.common import EXIT_FAILED, EXIT_OK, UsageError, console
from jacverify.cli.inputs import output_path


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``report`` command."""
    report = sub.add_parser(
        "report", parents=[common],
        help="render a saved JSON result again",
        description="Print a result written by 'jacverify check --json' and render it again.",
        epilog="Exit status as for 'jacverify check' on the same result: 0 every rule passes, "
        "1 some rule is wrong or has no rule (--strict and --allow-no-rule as recorded in the "
        "result unless given here), 2 a usage or input problem.",
    )
    report.add_argument("result", metavar="RESULT.json", help="a result written with --json")
    report.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    report.add_argument("--json", metavar="PATH", help="write the result again as JSON")
    report.add_argument("--quiet", action="store_true", help="print only the summary line")
    report.add_argument("--strict", action="store_true", default=None,
                        help="inconclusive and skipped rules fail too (exit 1)")
    report.add_argument("--allow-no-rule", action="store_true", default=None,
                        help="calls without a rule do not fail the exit status")
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``jacverify report``; returns the exit status."""
    source = Path(args.result)
    if not source.exists():
        raise UsageError(f"{source}: no such file")
    if source.is_dir():
        raise UsageError(f"{source}: is a directory, not a JSON report")
    html_path = output_path(args.html, "--html", source)
    json_path = output_path(args.json, "--json", source)

    from jacverify.report import read_document, write_html, write_json
    from jacverify.report.document import DocumentError, document_failed
    from jacverify.report.terminal import print_report

    try:
        document = read_document(source)
    except DocumentError as error:
        raise UsageError(str(error)) from error
    try:
        if html_path is not None:
            write_html(document, html_path)
        if json_path is not None:
            write_json(document, json_path)
    except OSError as error:
        raise UsageError(f"cannot write the report: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(
            f"{source}: the report is incomplete ({type(error).__name__}: {error})"
        ) from error
    options = document.get("options") or {}
    strict = bool(options.get("strict")) if args.strict is None else args.strict
    allow = bool(options.get("allow_no_rule")) if args.allow_no_rule is None else args.allow_no_rule
    written = [(what, path) for what, path in (("HTML report", html_path),
                                               ("JSON report", json_path)) if path is not None]
    print_report(document, console(), quiet=args.quiet, strict=strict, allow_no_rule=allow,
                 footer=[f"{what}: {path}" for what, path in written])
    return EXIT_FAILED if document_failed(document, strict=strict, allow_no_rule=allow) else EXIT_OK

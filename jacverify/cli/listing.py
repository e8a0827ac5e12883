"""``jacverify list``: the registered backward rules, with the module of every class."""

from __future__ import annotations

import argparse

from jacverify.cli.common import EXIT_OK, console
from jacverify.cli.inputs import import_rules


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``list`` command."""
    listing = sub.add_parser(
        "list", parents=[common], help="list the registered backward rules",
        description="List every registered backward rule: the forward class and the rule "
        "class, each with its module, and where the rule comes from (native, user, or an "
        "installed package).",
    )
    listing.add_argument(
        "--rules", action="append", default=[], metavar="PATH_OR_MODULE",
        help="a .py file or a dotted module registering rules, imported first (as for "
        "'jacverify check'); repeatable",
    )
    listing.add_argument("--source", metavar="SOURCE",
                         help="only rules from this source: native, user, or package:NAME")
    listing.set_defaults(func=run)


def class_name(cls: type) -> tuple[str, str]:
    """``("Dense", "keras.layers")``: a class and where it is imported from (Keras' public
    name when it has one, else its module)."""
    from jacverify.keras_internals import public_name

    public = public_name(cls)
    if public and public.rsplit(".", 1)[-1] == cls.__name__ and "." in public:
        return cls.__qualname__, public.rsplit(".", 1)[0]
    return cls.__qualname__, cls.__module__


def _cell(name: tuple[str, str], width: int) -> str:
    """``Class (module)`` in ``width`` characters: the module is shortened, not the class."""
    from jacverify.report.terminal import middle_truncate

    cls, module = name
    room = max(width - len(cls) - 3, 3)
    return f"{cls} ({middle_truncate(module, room)})"


def run(args: argparse.Namespace) -> int:
    """Run ``jacverify list``; returns the exit status."""
    for spec in args.rules:
        import_rules(spec)
    from rich.table import Table
    from rich.text import Text

    from jacverify import registered_rules
    from jacverify.report.terminal import fit_widths

    entries = sorted(
        registered_rules().values(),
        key=lambda e: (e.keras_class.__qualname__, e.keras_class.__module__),
    )
    if args.source:
        entries = [e for e in entries if e.source == args.source]
    rows = [(class_name(e.keras_class), class_name(e.rule_class), e.source) for e in entries]
    natural = [max([len(h)] + [len(r[k][0]) + len(r[k][1]) + 3 for r in rows])
               for k, h in enumerate(("Keras class (module)", "rule class (module)"))]
    out = console()
    headers = ("Keras class (module)", "rule class (module)", "source")
    natural.append(max([len(headers[2])] + [len(r[2]) for r in rows]))
    widths = fit_widths(natural[:2], out.width - natural[2] - 4) + natural[2:]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header, width in zip(headers, widths):
        table.add_column(header, no_wrap=True, max_width=width)
    for row in rows:
        table.add_row(Text(_cell(row[0], widths[0])), Text(_cell(row[1], widths[1])),
                      Text(row[2]))
    out.print(table)
    sources: dict = {}
    for entry in entries:
        sources[entry.source] = sources.get(entry.source, 0) + 1
    tally = ", ".join(f"{n} {source}" for source, n in sorted(sources.items()))
    out.print(f"{len(entries)} rules ({tally})" if entries else "0 rules", highlight=False)
    return EXIT_OK

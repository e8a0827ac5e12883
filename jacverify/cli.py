"""The ``jacverify`` command line.

* ``jacverify check MODEL.keras``: check every backward rule of a saved model, print a
  per-layer table, write JSON and HTML reports; exit 0 (every rule passes), 1 (some rule is
  wrong) or 2 (a usage or input problem, said in one line on stderr);
* ``jacverify report RESULT.json --html OUT``: render a saved result again;
* ``jacverify list``: the registered rules; ``jacverify example``: the bundled example.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import traceback
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

#: Exit statuses.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with what the command was given: one line for stderr, exit status 2."""


#: The bundled example: (model factory in jacverify.examples.tutorial, --rules module, the exit
#: status ``jacverify check`` must give, what the run shows).
EXAMPLE_RUNS = [
    ("plus_constant_model", "jacverify.examples.tutorial_rules", EXIT_OK,
     "the tutorial's PlusConstant model with its rule"),
    ("clip_model", "jacverify.examples.tutorial_rules", EXIT_FAILED,
     "the tutorial's Clip model with its rule, which is wrong outside [vmin, vmax]"),
    ("clip_model", "jacverify.examples.corrected_rules", EXIT_OK,
     "the tutorial's Clip model with a corrected rule"),
]


def _cmd_example(args: argparse.Namespace) -> int:
    import subprocess

    import keras

    from jacverify.examples import tutorial

    reports = Path(args.reports)
    models = reports / "models"
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {models}: {error}") from error
    for factory in sorted({run[0] for run in EXAMPLE_RUNS}):
        keras.backend.clear_session()  # layer names as in a fresh process
        keras.utils.set_random_seed(args.seed)
        getattr(tutorial, factory)().save(models / f"{factory}.keras")
    unexpected = []
    for factory, rules, expected, title in EXAMPLE_RUNS:
        stem = f"{factory}-{rules.rsplit('.', 1)[1]}"
        arguments = [
            "check", str(models / f"{factory}.keras"), "--rules", rules,
            "--seed", str(args.seed), "--examples", str(args.examples),
            "--json", str(reports / f"{stem}.json"), "--html", str(reports / f"{stem}.html"),
        ]
        print(f"== {title}\n$ jacverify {' '.join(arguments)}", flush=True)
        status = subprocess.run([sys.executable, "-m", "jacverify.cli", *arguments]).returncode
        verdict = "as expected" if status == expected else f"expected {expected}"
        print(f"exit status {status} ({verdict})\n", flush=True)
        if status != expected:
            unexpected.append(f"{stem}: exit status {status}, expected {expected}")
    if unexpected:
        print("jacverify example: " + "; ".join(unexpected), file=sys.stderr)
        return EXIT_FAILED
    print(f"Reports written to {reports}/ (models in {models}/).")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from jacverify import registered_rules

    entries = sorted(registered_rules().values(), key=lambda e: e.keras_class.__name__)
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("Keras class", no_wrap=True)
    table.add_column("rule class", no_wrap=True)
    table.add_column("source", overflow="fold")
    for entry in entries:
        table.add_row(Text(entry.keras_class.__name__), Text(entry.rule_class.__name__),
                      Text(entry.source))
    console = _console()
    console.print(table)
    console.print(f"{len(entries)} rules", highlight=False)
    return EXIT_OK


# ------------------------------------------------------------------------------ inputs
def _console(stderr: bool = False):
    """A Rich console; when not a terminal, 120 columns wide unless COLUMNS says otherwise."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 120
    return Console(file=stream, width=width, highlight=False, stderr=stderr)


def _first_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    line = text.splitlines()[0].strip() if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _error_text(error: BaseException) -> str:
    """The messages of an exception and of its causes, joined."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def _looks_like_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or Path(spec).is_file()


def import_rules(spec: str) -> Any:
    """Import a ``--rules`` module: a ``.py`` file (its directory joins ``sys.path``) or a
    dotted module name (importable from the current directory). Raises :class:`UsageError`
    when it does not exist or raises on import."""
    if _looks_like_file(spec):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--rules {spec}: no such file")
        directory = str(path.resolve().parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = re.sub(r"\W", "_", path.stem) or "rules"
        if name in sys.modules:
            name = f"_jacverify_rules_{len(sys.modules)}_{name}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise UsageError(f"--rules {spec}: cannot import it as a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as error:
            del sys.modules[name]
            raise UsageError(
                f"--rules {spec}: importing it raised {type(error).__name__}: "
                f"{_first_line(str(error))} (fix the file; --debug shows the traceback)"
            ) from error
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as error:
        if error.name and (spec == error.name or spec.startswith(error.name + ".")):
            raise UsageError(
                f"--rules {spec}: no module named {error.name!r} (give a .py file, or a module "
                "importable from the current directory)"
            ) from error
        raise UsageError(
            f"--rules {spec}: importing it raised ModuleNotFoundError: {_first_line(str(error))}"
        ) from error
    except (Exception, SystemExit) as error:
        raise UsageError(
            f"--rules {spec}: importing it raised {type(error).__name__}: "
            f"{_first_line(str(error))} (fix the module; --debug shows the traceback)"
        ) from error


def check_model_file(path: Path) -> None:
    """Raise :class:`UsageError` unless ``path`` is a readable, intact ``.keras`` archive (read
    only: the file is never written to)."""
    resave = "save the model with model.save('model.keras')"
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a .keras file ({resave})")
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise UsageError(
            f"{path}: a legacy HDF5 file, not a .keras file (load it with Keras and {resave})"
        )
    if path.suffix != ".keras":
        raise UsageError(f"{path}: not a .keras file; MODEL is a model saved as .keras ({resave})")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from error
    if not zipfile.is_zipfile(path):
        raise UsageError(
            f"{path}: not a .keras archive (not a zip file: truncated or corrupt?); {resave}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise UsageError(f"{path}: not a .keras archive (no config.json inside)")
            broken = archive.testzip()
            if broken is not None:
                raise UsageError(
                    f"{path}: corrupt .keras archive ({broken} fails its checksum); {resave}"
                )
            json.loads(archive.read("config.json").decode("utf-8"))
    except UsageError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise UsageError(f"{path}: corrupt .keras archive ({_first_line(str(error))})") from error


def load_model(path: Path, *, unsafe: bool) -> Any:
    """``keras.saving.load_model(path, compile=False, safe_mode=not unsafe)``; Keras' errors
    become one-line :class:`UsageError` messages saying how to fix them."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not unsafe)
    except Exception as error:
        text = _error_text(error)
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        if unknown:
            name = unknown.group(1)
            where = re.search(r"'module': '([^']*)', 'class_name': '" + re.escape(name) + "'", text)
            module = f" (module {where.group(1)})" if where and where.group(1) else ""
            raise UsageError(
                f"{path}: unknown layer class '{name}'{module}: pass the file or module that "
                "defines it (registered with @keras.saving.register_keras_serializable) with "
                "--rules"
            ) from error
        if "safe_mode" in text or "unsafe deserialization" in text.lower():
            what = "a Lambda layer" if "Lambda" in text else "Python code"
            raise UsageError(
                f"{path}: the model holds {what} whose code would run on loading, which is "
                "refused by default; if you trust the file, pass --unsafe-deserialization"
            ) from error
        raise UsageError(
            f"{path}: Keras could not load the model: {type(error).__name__}: "
            f"{_first_line(text)} (--debug shows the traceback)"
        ) from error


def _output_path(value: str | None, flag: str, model: Path) -> Path | None:
    """A report path: its directory must exist, and it must not be the model file."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{flag} {value}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {value}: no such directory {parent}")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {value}: cannot write in {parent}")
    if path.exists() and model.exists() and path.resolve() == model.resolve():
        raise UsageError(f"{flag} {value}: is the model file; give another name")
    return path


# ------------------------------------------------------------------------------ check
@contextlib.contextmanager
def _hypothesis_home() -> Iterator[None]:
    """Keep Hypothesis' working files (``.hypothesis/``) in a temporary directory instead of
    the current one while the check runs."""
    try:
        from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
    except ImportError:  # another Hypothesis layout: leave it be
        yield
        return
    previous = storage_directory()
    with tempfile.TemporaryDirectory(prefix="jacverify-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            set_hypothesis_home_dir(str(previous))


def _run_check(model_path: Path, args: argparse.Namespace) -> Any:
    """Load the model and run check_model, with a progress bar on stderr (none with
    --quiet)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from jacverify.backward.registry import MissingBackwardRuleError
    from jacverify.check.model_check import check_model

    progress = Progress(
        SpinnerColumn(),
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
        console=_console(stderr=True),
        transient=True,
        disable=args.quiet,
    )
    with progress, _hypothesis_home():
        task = progress.add_task(f"loading {model_path}", total=None)
        model = load_model(model_path, unsafe=args.unsafe_deserialization)
        progress.update(task, description=f"preparing {model.name}")

        def report(index: int, total: int, label: str) -> None:
            progress.update(task, total=total, completed=index, description=str(label))

        try:
            result = check_model(
                model, examples=args.examples, seed=args.seed, convention=args.convention,
                progress=report,
            )
        except MissingBackwardRuleError as error:
            message = _first_line(str(error))
            found = re.match(r"No backward rule for (.*?) \(module ([^)]*)\)", message)
            what = found.group(1) if found else "a layer"
            cls = re.search(r"class (\w+)", what)
            cls_name = cls.group(1) if cls else "TheLayer"
            raise UsageError(
                f"{what} has no backward rule: write one, register it with "
                f"@jacverify.register_backward({cls_name}) in a file and pass it with --rules"
            ) from error
        except ValueError as error:
            text = _first_line(str(error))
            if text.startswith(("Model input", "inputs=")):
                raise UsageError(f"{args.model}: {text}") from error
            raise
        progress.update(task, completed=progress.tasks[0].total or 0)
    return result


def _cmd_check(args: argparse.Namespace) -> int:
    from jacverify.report import build_document, write_html, write_json
    from jacverify.report.document import document_failed
    from jacverify.report.terminal import print_report

    if args.examples < 1:
        raise UsageError(f"--examples {args.examples}: give at least 1")
    model_path = Path(args.model)
    check_model_file(model_path)
    json_path = _output_path(args.json, "--json", model_path)
    html_path = _output_path(args.html, "--html", model_path)
    for spec in args.rules:
        import_rules(spec)
    result = _run_check(model_path, args)
    document = build_document(
        models=[result],
        title=model_path.name,
        command=["jacverify", *args.argv],
        options={
            "model": str(model_path),
            "examples": args.examples,
            "seed": result.seed,
            "convention": args.convention,
            "strict": args.strict,
            "rules": list(args.rules),
            "unsafe_deserialization": args.unsafe_deserialization,
        },
    )
    console = _console()
    written = []
    try:
        if json_path is not None:
            written.append(("JSON report", write_json(document, json_path)))
        if html_path is not None:
            written.append(("HTML report", write_html(document, html_path)))
    except OSError as error:
        raise UsageError(f"cannot write the report: {error}") from error
    print_report(document, console, quiet=args.quiet, strict=args.strict,
                 footer=[f"{what}: {path}" for what, path in written])
    return EXIT_FAILED if document_failed(document, strict=args.strict) else EXIT_OK


# ------------------------------------------------------------------------------ report
def _cmd_report(args: argparse.Namespace) -> int:
    from jacverify.report import read_document, write_html, write_json
    from jacverify.report.document import DocumentError
    from jacverify.report.terminal import print_report

    try:
        document = read_document(args.result)
    except DocumentError as error:
        raise UsageError(str(error)) from error
    source = Path(args.result)
    html_path = _output_path(args.html, "--html", source)
    json_path = _output_path(args.json, "--json", source)
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
    written = [(what, path) for what, path in (("HTML report", html_path),
                                               ("JSON report", json_path)) if path is not None]
    print_report(document, _console(), quiet=args.quiet,
                 footer=[f"{what}: {path}" for what, path in written])
    return EXIT_OK


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from jacverify import __version__

    version = f"jacverify {__version__}"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--version", action="version", version=version)
    common.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")

    parser = argparse.ArgumentParser(
        prog="jacverify",
        description="Build backward (Jacobian) models of Keras models and check their rules.",
        epilog="Exit status: 0 every rule passes, 1 some rule is wrong, 2 a usage or input "
        "problem, 3 an internal error. 'jacverify COMMAND --help' describes each command.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check", parents=[common],
        help="check every backward rule of a saved .keras model",
        description="Load a .keras model, check the backward rule of every layer in place and "
        "the whole backward model end to end, print a per-layer table and a summary.",
        epilog="Exit status: 0 every rule passes; 1 a rule is fail, boundary or error (with "
        "--strict also inconclusive or skipped); 2 a usage or input problem (one line on "
        "stderr; --debug shows the traceback).",
    )
    check.add_argument("model", metavar="MODEL", help="the model, saved with model.save('x.keras')")
    check.add_argument(
        "--rules", action="append", default=[], metavar="PATH_OR_MODULE",
        help="a .py file or a dotted module defining custom layers and registering their rules "
        "(@jacverify.register_backward); imported before the model loads; repeatable",
    )
    check.add_argument("--examples", type=int, default=50, metavar="N",
                       help="Hypothesis examples per rule (default 50)")
    check.add_argument("--seed", type=int, default=None, metavar="N",
                       help="seed of every check (default: drawn, and reported to replay)")
    check.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH")
    check.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    check.add_argument(
        "--convention", choices=("subgradient", "autograd"), default="subgradient",
        help="at kinks, accept any value between the one-sided derivatives (subgradient, the "
        "default) or only torch autograd's value (autograd)",
    )
    check.add_argument("--quiet", action="store_true", help="print only the summary line")
    check.add_argument("--strict", action="store_true",
                       help="inconclusive and skipped rules fail too (exit 1)")
    check.add_argument(
        "--unsafe-deserialization", action="store_true",
        help="allow loading models whose Lambda layers hold Python code (runs that code: only "
        "for files you trust)",
    )
    check.set_defaults(func=_cmd_check)

    report = sub.add_parser(
        "report", parents=[common],
        help="render a saved JSON result again",
        description="Print a result written by 'jacverify check --json' and render it again.",
    )
    report.add_argument("result", metavar="RESULT.json", help="a result written with --json")
    report.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    report.add_argument("--json", metavar="PATH", help="write the result again as JSON")
    report.add_argument("--quiet", action="store_true", help="print only the summary line")
    report.set_defaults(func=_cmd_report)

    listing = sub.add_parser("list", parents=[common], help="list the registered backward rules")
    listing.set_defaults(func=_cmd_list)

    example = sub.add_parser(
        "example", parents=[common],
        help="save the tutorial's models and run 'jacverify check' on them with the "
        "tutorial's rules (one of which is wrong) and with corrected ones, writing JSON and "
        "HTML reports; exit 0 when every verdict is the expected one",
    )
    example.add_argument("--reports", default="reports", metavar="DIR",
                         help="where the reports (and the models, in DIR/models) go "
                         "(default: reports)")
    example.add_argument("--examples", type=int, default=50, metavar="N",
                         help="Hypothesis examples per rule (default 50)")
    example.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    example.set_defaults(func=_cmd_example)

    from jacverify.analysis.commands import add_analysis_parsers  # explain, attack

    add_analysis_parsers(sub, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    command = f"jacverify {args.command}"
    try:
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
            f"{command}: internal error: {type(error).__name__}: {_first_line(str(error))} "
            "(--debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

"""``python -m checks``: run the corpus over several seeds and print how well jacverify did."""

from __future__ import annotations

import argparse
import datetime
import sys
import time

from checks.baselines import BASELINES
from checks.corpus import select
from checks.metrics import summarize
from checks.outcomes import run_case
from checks.report import case_table, category_table, summary_text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m checks",
        description="Run jacverify's fault corpus: every deliberately wrong rule must be "
        "judged fail/boundary/error, every correct rule pass. Exits 1 otherwise.",
    )
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds 0..N-1 per case (default 5)")
    parser.add_argument("--examples", type=int, default=100,
                        help="Hypothesis examples per check (default 100, check_layer's)")
    parser.add_argument("--only", metavar="PATTERN",
                        help="cases whose name or category matches (glob; a word matches as "
                        "a substring)")
    parser.add_argument("--baselines", action="store_true",
                        help="also run torch.autograd.gradcheck (full and fast mode) and a "
                        "one-point allclose against autograd, side by side")
    parser.add_argument("--sensitivity", action="store_true",
                        help="also measure the smallest scale error (1 + e) each method "
                        "reliably flags")
    parser.add_argument("--plot", metavar="PNG",
                        help="with --sensitivity: save the sweep as a plot")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--quiet", action="store_true", help="no per-check progress lines")
    return parser.parse_args(argv)


def _progress(quiet: bool):
    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    return say


def list_cases(pattern: str | None) -> None:
    """Print every selected case's declaration."""
    for case in select(pattern):
        accepted = "/".join(sorted(case.accepted))
        print(f"{case.name:38s} {case.category:16s} {accepted:14s} {case.description}")


def main(argv: list[str] | None = None) -> int:
    """Run the corpus; 0 when every wrong rule is flagged and no correct rule is."""
    args = parse_args(argv)
    if args.list:
        list_cases(args.only)
        return 0
    say = _progress(args.quiet)
    cases = select(args.only)
    if not cases:
        print(f"no case matches {args.only!r}", file=sys.stderr)
        return 2
    seeds = list(range(args.seeds))
    baselines = list(BASELINES) if args.baselines else []
    command = "python -m checks " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    runs = []
    for case in cases:
        for seed in seeds:
            run = run_case(case, seed, examples=args.examples, baselines=bool(baselines))
            runs.append(run)
            mark = "ok" if run.ok else ("MISSED" if case.wrong else "FALSE ALARM")
            say(f"{case.name} seed {seed}: {run.verdict} ({run.seconds:.1f} s) {mark}")
    summary = summarize(runs)
    print(f"`{command.strip()}` on {datetime.date.today().isoformat()}, "
          f"{time.perf_counter() - started:.0f} s wall clock\n")
    print(case_table(runs, baselines))
    print()
    print(category_table(runs, baselines))
    print()
    print(summary_text(summary, runs, baselines))
    if args.sensitivity:
        from checks import sensitivity

        print()
        results = sensitivity.sweep(sensitivity.RULES, seeds, args.examples, progress=say)
        print("Smallest scale error e reliably flagged (every seed, every larger e too) for a "
              "correct rule times (1 + e):\n")
        print(sensitivity.sensitivity_table(results))
        if args.plot:
            sensitivity.plot(results, args.plot)
            print(f"\nplot: {args.plot}")
    return 0 if summary.perfect else 1


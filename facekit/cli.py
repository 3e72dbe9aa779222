"""The ``facekit`` command line: ``facekit report`` runs notebooks into ``reports/<run>/``,
``facekit compare`` compares two runs.

Subcommands live in :data:`SUBCOMMANDS` (name -> (help, add_arguments, handler)); a handler takes
the parsed arguments and returns the exit code. Exit codes: 0 all good, 1 a notebook failed or was
skipped (report) or a regression was found with ``--fail-on-regression`` (compare), 2 a usage or
configuration error (the message goes to stderr, without a traceback).
"""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Callable, NamedTuple

from facekit.config import ConfigError
from facekit.profiles import ACCEPTED

DRY_RUN_STEPS = 2  # `facekit report --dry-run`: steps per loop


def parse_value(text: str):
    """Read a ``-p`` value the way Papermill does: int, float, bool, None, else the string.

    >>> [parse_value(t) for t in ["3", "0.5", "true", "False", "None", "resnet"]]
    [3, 0.5, True, False, None, 'resnet']
    """
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_parameters(items: list[str] | None) -> dict:
    """``["epochs=3", "lr=0.1"]`` -> ``{"epochs": 3, "lr": 0.1}``; a malformed item is a ConfigError."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"-p {item!r} is not KEY=VALUE with KEY a Python name")
        params[key] = parse_value(value)
    return params


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="paths, names or name prefixes (e.g. 00 01_cnn); default: the course (every notebook "
                             "not in the benchmark group)")
    parser.add_argument("--all", dest="all_notebooks", action="store_true",
                        help="every notebook: the course and the benchmarks")
    parser.add_argument("--no-deps", dest="dependencies", action="store_false",
                        help="do not add the notebooks the chosen ones depend on (their artifacts must exist)")
    parser.add_argument("--rerun-failed", metavar="RUN_DIR",
                        help="run again the failed and skipped notebooks of RUN_DIR, with its recorded profile "
                             "and parameters, updating its summary")
    parser.add_argument("--rerun", metavar="RUN_DIR",
                        help="run again the NOTEBOOKs named (whatever their status) in RUN_DIR, with its recorded "
                             "profile, parameters and artifacts, updating its summary (the rerun is recorded)")
    parser.add_argument("--artifacts", dest="artifacts_dir", metavar="DIR",
                        help="FACEKIT_ARTIFACTS for the run's kernels: a folder, or an earlier run folder whose "
                             "artifacts to reuse (default: a fresh folder of this run in the cache; with --no-deps "
                             "leaving a dependency out, the shared $FACEKIT_CACHE/artifacts)")
    parser.add_argument("--profile", default="auto", choices=ACCEPTED, help="sizes to run at (default: auto)")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", metavar="KEY=VALUE",
                        help="a notebook parameter; repeat for more (values read like papermill -p)")
    parser.add_argument("--run", dest="run_name", metavar="NAME",
                        help="run folder name (default: <date>-<profile>-<device>)")
    parser.add_argument("--reports-dir", default="reports", metavar="DIR", help="default: reports")
    parser.add_argument("--notebooks-dir", default="notebooks", metavar="DIR", help="default: notebooks")
    parser.add_argument("--no-html", dest="html", action="store_false", help="skip the HTML export")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="seconds one cell may run")
    parser.add_argument("--kernel", dest="kernel_name", metavar="NAME", help="Jupyter kernel (default: python3)")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing run folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, run nothing")
    parser.add_argument("--dry-run", dest="max_steps", type=int, nargs="?", const=DRY_RUN_STEPS, metavar="STEPS",
                        help="prove a profile on this machine: its configuration, but every training and evaluation "
                             f"loop capped at STEPS steps (default {DRY_RUN_STEPS}) and the count-like sizes capped "
                             "(sets FACEKIT_MAX_STEPS; see facekit.profiles); the run is named "
                             "<date>-<profile>-dry-...")
    parser.add_argument("--course-page", metavar="RUN_DIR",
                        help="run nothing: write the course page of RUN_DIR (one line per chapter: status, duration, "
                             "3 key metrics, a key figure thumbnail) into the README.md of its reports folder")


def _list_notebooks(args) -> int:
    from facekit.reports.order import notebook_meta
    from facekit.reports.runner import available_notebooks, default_selection, notebook_parameters, select_notebooks

    if args.notebooks:
        paths = select_notebooks(args.notebooks, args.notebooks_dir)
    elif available_notebooks(args.notebooks_dir):
        paths = default_selection(args.notebooks_dir, all_notebooks=args.all_notebooks)
    else:
        paths = []
    if not paths:
        print(f"no notebooks in {args.notebooks_dir}")
    for path in paths:
        try:
            meta = notebook_meta(path)
        except ConfigError as exc:
            meta = {"group": "course", "depends_on": [], "error": str(exc)}
        tags = ("  [benchmark]" if meta["group"] == "benchmark" else "") + \
            (f"  (depends on {', '.join(meta['depends_on'])})" if meta["depends_on"] else "")
        print(path.stem + tags)
        if meta.get("error"):
            print(f"    ({meta['error']})")
        try:
            params = notebook_parameters(path)
        except ConfigError as exc:
            print(f"    ({exc})")
            continue
        for name, p in params.items():
            kind = p.get("inferred_type_name")
            if kind in (None, "None"):  # no annotation: name the type of the default when it is a literal
                try:
                    kind = type(ast.literal_eval(p["default"])).__name__
                except (ValueError, SyntaxError):
                    kind = None
            kind = "" if kind in (None, "NoneType") else f": {kind}"
            note = f"  # {p['help']}" if p.get("help") else ""
            print(f"    {name}{kind} = {p['default']}{note}")
    return 0


def _rerun(args, argv_given: set) -> int:
    from facekit.reports.rerun import rerun_failed

    flag = "--rerun" if args.rerun else "--rerun-failed"
    clashing = sorted(argv_given & {"all_notebooks", "parameters", "run_name", "overwrite", "artifacts_dir",
                                     "dependencies", "list", "profile", "rerun_failed" if args.rerun else "rerun"})
    if not args.rerun and "notebooks" in argv_given:
        clashing = sorted(clashing + ["notebooks (to rerun chosen notebooks use --rerun RUN_DIR NOTEBOOK...)"])
    if clashing:
        raise ConfigError(f"{flag} reuses the run's notebooks, profile and parameters; drop {', '.join(clashing)}")
    if args.rerun and not args.notebooks:
        raise ConfigError("--rerun RUN_DIR needs the notebooks to run again, e.g. --rerun reports/<run> 01")
    names = {"kernel_name": "kernel_name", "timeout": "execution_timeout", "html": "html"}  # argument -> keyword
    kwargs = {kw: getattr(args, arg) for arg, kw in names.items() if arg in argv_given}
    if args.rerun:
        kwargs["notebooks"] = args.notebooks
    return _report_done(rerun_failed(args.rerun or args.rerun_failed, progress=not args.quiet, **kwargs))


def _given(args) -> set:
    """The report options that differ from their defaults (what the user typed)."""
    defaults = vars(build_parser().parse_args(["report"]))
    return {k for k, v in vars(args).items()
            if k in defaults and v != defaults[k] and k not in ("rerun_failed", "rerun", "course_page")}


def _report_done(summary) -> int:
    from facekit.reports.index import index_status

    print(f"{summary.run_dir}: {index_status(summary.counts())}; see {summary.run_dir / 'summary.md'}")
    for entry in summary.failed:
        err = entry.error or {}
        first = (str(err.get("evalue") or "").strip().splitlines() or [""])[0]
        print(f"  failed {entry.name}: {err.get('ename')}: {first[:200]}", file=sys.stderr)
    for entry in summary.skipped:
        print(f"  skipped {entry.name}: {entry.skip_reason}", file=sys.stderr)
    return 0 if summary.ok else 1


def _course_page(args, given: set) -> int:
    from facekit.reports.index import write_course_page

    clashing = sorted(given - {"course_page", "quiet"})
    if clashing:
        raise ConfigError(f"--course-page runs nothing; drop {', '.join(clashing)}")
    readme = write_course_page(args.course_page)
    if not args.quiet:
        print(f"{readme}: course page of {args.course_page}")
    return 0


def _report(args) -> int:
    if args.course_page:
        return _course_page(args, _given(args))
    if args.rerun_failed or args.rerun:
        if args.max_steps is not None:
            raise ConfigError(f"{'--rerun' if args.rerun else '--rerun-failed'} reuses the run's dry-run setting; "
                              "drop --dry-run")
        return _rerun(args, _given(args))
    if args.list:
        return _list_notebooks(args)
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--dry-run {args.max_steps} is not accepted; give a whole number of steps >= 1")
    from facekit.reports.runner import run_reports

    summary = run_reports(
        args.notebooks or None, profile=args.profile, parameters=parse_parameters(args.parameters),
        run_name=args.run_name, reports_dir=args.reports_dir, notebooks_dir=args.notebooks_dir,
        html=args.html, kernel_name=args.kernel_name, execution_timeout=args.timeout,
        progress=not args.quiet, overwrite=args.overwrite, all_notebooks=args.all_notebooks,
        dependencies=args.dependencies, artifacts_dir=args.artifacts_dir, max_steps=args.max_steps,
    )
    return _report_done(summary)


def _add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="the baseline run folder (holding summary.json)")
    parser.add_argument("run_b", metavar="RUN_B", help="the run to check against it")
    parser.add_argument("--tolerance", type=float, default=0.05, metavar="REL",
                        help="relative change not flagged (default 0.05 = 5%%)")
    parser.add_argument("--output", metavar="FILE", help="also write the Markdown table to FILE (atomically)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when a metric regressed beyond the tolerance or a notebook stopped passing")
    parser.add_argument("--higher", action="append", default=[], metavar="METRIC",
                        help="a metric for which higher is better (overrides the unit/name hints); repeatable")
    parser.add_argument("--lower", action="append", default=[], metavar="METRIC",
                        help="a metric for which lower is better; repeatable")
    parser.add_argument("--durations", action="store_true", help="compare notebook durations too")


def _compare(args) -> int:
    from facekit.io import write_text
    from facekit.reports.compare import compare_runs

    comparison = compare_runs(args.run_a, args.run_b, tolerance=args.tolerance, higher=args.higher,
                              lower=args.lower, include_durations=args.durations)
    text = comparison.to_markdown()
    sys.stdout.write(text)
    if args.output:
        write_text(args.output, text)
    if comparison.has_regression:
        n = len(comparison.regressions) + len(comparison.status_regressions)
        print(f"facekit compare: {n} regression(s) beyond tolerance {args.tolerance}", file=sys.stderr)
        return 1 if args.fail_on_regression else 0
    return 0


def _add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (holding summary.json)")
    parser.add_argument("--no-index", dest="index", action="store_false",
                        help="leave the runs index (README.md of each run's parent) alone")


def _summary(args) -> int:
    from pathlib import Path

    from facekit.reports.batch import finish
    from facekit.reports.summary import load_summary

    for run in args.runs:
        if not (Path(run) / "summary.json").is_file():
            raise ConfigError(f"{run!r} is not a report run: no summary.json there")
        summary = load_summary(run)
        finish(summary, Path(run).parent if args.index else None)
        print(f"{run}: summary.md" + "".join(f", {p}" for p in summary.plots))
    return 0


class Subcommand(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "report": Subcommand("execute notebooks into reports/<run>/ (ipynb, html, summary)",
                         _add_report_arguments, _report),
    "summary": Subcommand("redraw the summary.md, plots and runs index of existing run folders",
                          _add_summary_arguments, _summary),
    "compare": Subcommand("compare two report runs metric by metric (A, B, ratio, change, regressions)",
                          _add_compare_arguments, _compare),
}


def build_parser() -> argparse.ArgumentParser:
    from facekit import __version__

    parser = argparse.ArgumentParser(prog="facekit", description="facekit course tools")
    parser.add_argument("--version", action="version", version=f"facekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in SUBCOMMANDS.items():
        cmd.add_arguments(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``facekit`` command line and return its exit code.

    >>> main(["report", "--list", "--notebooks-dir", "notebooks"])  # doctest: +SKIP
    00_intro
        profile: str = 'auto'
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return SUBCOMMANDS[args.command].handler(args)
    except ConfigError as exc:
        print(f"facekit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facekit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

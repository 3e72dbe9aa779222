"""The ``facekit`` command line: ``facekit report`` runs notebooks into ``reports/<run>/``.

Subcommands live in :data:`SUBCOMMANDS` (name -> (help, add_arguments, handler)); a handler takes
the parsed arguments and returns the exit code. Exit codes: 0 all good, 1 a notebook failed,
2 a usage or configuration error (the message goes to stderr, without a traceback).
"""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Callable, NamedTuple

from facekit.config import ConfigError
from facekit.profiles import ACCEPTED


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
                        help="paths, names or name prefixes (e.g. 00 01_cnn); default: every notebook")
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


def _list_notebooks(args) -> int:
    from facekit.reports.runner import available_notebooks, notebook_parameters, select_notebooks

    paths = select_notebooks(args.notebooks, args.notebooks_dir) if args.notebooks else \
        available_notebooks(args.notebooks_dir)
    if not paths:
        print(f"no notebooks in {args.notebooks_dir}")
    for path in paths:
        print(path.stem)
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


def _report(args) -> int:
    if args.list:
        return _list_notebooks(args)
    from facekit.reports.runner import run_reports

    summary = run_reports(
        args.notebooks or None, profile=args.profile, parameters=parse_parameters(args.parameters),
        run_name=args.run_name, reports_dir=args.reports_dir, notebooks_dir=args.notebooks_dir,
        html=args.html, kernel_name=args.kernel_name, execution_timeout=args.timeout,
        progress=not args.quiet, overwrite=args.overwrite,
    )
    c = summary.counts()
    print(f"{summary.run_dir}: {c['ok']} ok, {c['failed']} failed; see {summary.run_dir / 'summary.md'}")
    for entry in summary.failed:
        err = entry.error or {}
        first = (str(err.get("evalue") or "").strip().splitlines() or [""])[0]
        print(f"  failed {entry.name}: {err.get('ename')}: {first[:200]}", file=sys.stderr)
    return 0 if summary.ok else 1


class Subcommand(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "report": Subcommand("execute notebooks into reports/<run>/ (ipynb, html, summary)",
                         _add_report_arguments, _report),
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

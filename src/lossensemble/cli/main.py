"""Entry point of the ``lossensemble`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func=run`` where
``run(args) -> int`` does the work. Errors meant for the user (:class:`UserError`)
end with a one-line message on stderr and exit status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lossensemble import __version__
from lossensemble.errors import UserError

# Subcommand modules, in the order they appear in --help.
SUBCOMMANDS = [
    "demo",
    "train",
    "evaluate",
    "compare",
    "compress",
    "export",
    "embed",
    "index",
    "search",
    "serve",
    "evaluate_embeddings",
    "datasets",
]


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse's own convention)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lossensemble",
        description="Deep metric learning with an ensemble of loss functions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"lossensemble.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from lossensemble.runtime import configure_logging

    configure_logging(debug=args.debug)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"lossensemble: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossensemble: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from lossensemble.training import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted) and not args.debug:
            print(f"lossensemble: {exc}. Resume with: lossensemble train --resume {exc.run_dir}", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

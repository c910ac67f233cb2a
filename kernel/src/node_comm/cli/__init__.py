"""The ``node-comm`` command: one subcommand per job.

``run`` serves a node from YAML, ``call`` / ``ping`` / ``health`` reach a running node,
``check-config`` validates a file, ``plugins`` lists what is installed. Exit codes: 0 ok, 1 the
call or check failed, 2 a usage or config error. Subcommands import what they need when they run,
so ``node-comm --help`` stays fast and ``health`` alone imports gRPC.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..exceptions import ConfigError
from ..plugins import ENV_BLOCK, ENV_NO_AUTOLOAD
from . import check_config_cmd, plugins_cmd, remote_cmd, run_cmd
from .output import EXIT_FAILED, EXIT_USAGE, UsageError, error
from .plugins_cmd import plugins_report

__all__ = ["build_parser", "main", "plugins_report"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``node-comm``."""
    parser = argparse.ArgumentParser(
        prog="node-comm",
        description="node-comm: any node calls any other node's methods, over a transport chosen by name.",
        epilog=(
            "Exit codes: 0 ok, 1 the call or check failed, 2 usage or config error. "
            f"Environment: {ENV_BLOCK}=a,b blocks plugins by entry-point name; "
            f"{ENV_NO_AUTOLOAD}=1 loads no installed plugin. "
            "`node-comm COMMAND --help` shows an example of each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"node-comm {plugins_cmd.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_cmd.add_parser(sub)
    remote_cmd.add_parsers(sub)
    check_config_cmd.add_parser(sub)
    plugins_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``node-comm`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits with 2
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

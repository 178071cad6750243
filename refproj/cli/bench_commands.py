"""The `refproj bench` and `refproj browser-bench` commands: thin wrappers over the optional
refproj_bench package (``pip install 'refproj[bench]'``), which the product never imports."""

from __future__ import annotations

import argparse
import os
import sys

from refproj import _format as fmt
from refproj.cli.commands import _database_errors
from refproj.errors import InvalidArgument, RefprojError
from refproj.settings import database_url, libpq_url


def cmd_bench(args: argparse.Namespace) -> int:
    """Creates and drops its own databases on the server of --database-url / $DATABASE_URL; writes
    the results JSON and bench/README.md. 7 for a bad option; 1 without refproj[bench]."""
    try:
        from refproj_bench.command import run_command
    except ImportError as error:  # the benchmark ships as the optional extra refproj[bench]
        missing = error.name or "refproj_bench"
        raise RefprojError(
            f"the benchmark is not installed ({missing} missing): pip install 'refproj[bench]'"
        ) from error
    try:
        with _database_errors(database_url(args.database_url)):
            run_command(
                profiles=args.profiles,
                database_url=args.database_url,
                shown_url=fmt.shown(database_url(args.database_url)) if args.database_url else None,
                output=args.output,
                quick=args.quick,
                history_profile=args.history_profile,
            )
    except ValueError as error:
        if isinstance(error, RefprojError):
            raise
        raise InvalidArgument(str(error)) from error
    return 0


def cmd_browser_bench(args: argparse.Namespace) -> int:
    """Exit codes: 0 measured, 1 a failed load (or --check found errors), 2 a setup problem or a
    bad argument (checked before anything is created), 7 a malformed --database-url."""
    from pathlib import Path

    try:
        from refproj_bench.browser import SetupError
        from refproj_bench.browser_run import Options, run
    except ImportError as error:
        missing = error.name or "refproj_bench"
        print(
            f"refproj: the browser harness is not installed ({missing} missing): "
            "pip install 'refproj[bench]'",
            file=sys.stderr,
        )
        return 2
    options = Options(
        base=args.base,
        database_url=libpq_url(args.database_url),
        routes=args.routes,
        viewports=args.viewports or ["desktop", "mobile"],
        check=args.check,
        compare_profiles=[p.strip() for p in (args.compare or "").split(",") if p.strip()],
        repeat=args.repeat,
        output=Path(args.output),
        token=args.token if args.token is not None else os.environ.get("REFPROJ_API_TOKEN") or None,
    )
    try:
        return run(options)
    except SetupError as error:
        print(fmt.text(f"refproj: {error}"), file=sys.stderr)
        return 2

"""``refproj bench``: a benchmark run from the command line's options; the CLI maps errors."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from refproj_bench.config import FULL, QUICK, BenchConfig
from refproj_bench.report import render_markdown, write_outputs
from refproj_bench.run import run_bench


def run_command(
    *,
    profiles: str,
    database_url: str | None,
    shown_url: str | None,
    output: str,
    quick: bool,
    history_profile: str | None,
) -> None:
    """Measure ``profiles`` (comma-separated), write ``output``/results and README.md, print the tables.

    ``shown_url`` is ``database_url`` without its password, for the command line the results record.
    Raises ValueError for unknown profiles, psycopg/SQLAlchemy errors when the server is unreachable.
    """
    command = ["refproj"] + (["--database-url", shown_url] if shown_url else [])
    command += ["bench", "--profiles", profiles] + (["--quick"] if quick else [])
    if output != "bench":
        command += ["--output", output]
    if history_profile:
        command += ["--history-profile", history_profile]
    config = BenchConfig(
        profiles=[name.strip() for name in profiles.split(",") if name.strip()],
        server_url=database_url,
        output_dir=Path(output),
        iterations=QUICK if quick else FULL,
        quick=quick,
        history_profile=history_profile,
        command=shlex.join(command),
    )
    results = run_bench(config)
    path = write_outputs(results, Path(output))
    print(render_markdown(results))
    print(f"results: {path}; {Path(output) / 'README.md'} regenerated", file=sys.stderr)

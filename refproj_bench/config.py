"""What a benchmark run measures and how much: the sample budgets and the run's configuration."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]
Json = dict[str, Any]

PROFILE_ORDER = ("tiny", "S", "M", "L")
HISTORY_FACTORS = (1.0, 3.0, 10.0)


@dataclass(frozen=True)
class Budget:
    """Take up to ``n`` samples, stopping early once ``seconds`` have passed and ``minimum`` are in."""

    n: int
    seconds: float
    minimum: int


@dataclass(frozen=True)
class Iterations:
    overview_reads: Budget  # list() cold and raw fetch, interleaved
    warm_reads: int
    live_reads: Budget
    naive_reads: Budget
    details: Budget
    refreshes: Budget
    history_refreshes: Budget  # rounds over the history databases
    write_rounds: int  # rounds, each one block per database (with / without projection)
    single_rows_per_block: int
    batches_per_block: int
    batch_rows: int = 1000
    staleness_seconds: float = 10.0
    write_interval: float = 0.05
    list_threads: int = 64
    refresh_processes: int = 8
    refresh_threads: int = 8


FULL = Iterations(
    overview_reads=Budget(200, 30.0, 30),
    warm_reads=2000,
    live_reads=Budget(10, 45.0, 3),
    naive_reads=Budget(10, 60.0, 3),
    details=Budget(200, 30.0, 20),
    refreshes=Budget(11, 60.0, 3),
    history_refreshes=Budget(11, 90.0, 3),
    write_rounds=6,
    single_rows_per_block=300,
    batches_per_block=3,
)

QUICK = Iterations(
    overview_reads=Budget(30, 5.0, 5),
    warm_reads=300,
    live_reads=Budget(3, 10.0, 1),
    naive_reads=Budget(2, 15.0, 1),
    details=Budget(20, 5.0, 5),
    refreshes=Budget(3, 20.0, 2),
    history_refreshes=Budget(2, 30.0, 1),
    write_rounds=2,
    single_rows_per_block=150,
    batches_per_block=2,
    staleness_seconds=5.0,
)


@dataclass
class BenchConfig:
    """One benchmark run.

    ``server_url``: any database URL on the server; the harness connects to its ``postgres``
    database to create and drop ``refproj_bench_<profile><suffix>[_...]`` databases.
    ``existing_database``: use this (migrated or empty) database for the single profile instead of
    creating one; it is seeded when empty and never dropped, but the benchmark writes to it (runs,
    a ``bench_stream`` connector and connection, spine events). ``history_profile`` defaults to the
    smallest requested profile other than ``tiny`` (or ``tiny``): seeding M at history factor 10
    (about 30M spine events) takes too long on a small machine.
    """

    profiles: Sequence[str]
    server_url: str | None = None
    output_dir: Path | None = Path("bench")
    iterations: Iterations = FULL
    quick: bool = False
    history_profile: str | None = None
    history_factors: Sequence[float] = HISTORY_FACTORS
    existing_database: str | None = None
    name_suffix: str = ""
    seed: int = 0
    keep_databases: bool = False
    command: str = ""
    progress: Progress | None = None

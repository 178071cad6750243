"""``refproj bench``: measure the projection against its baselines (BENCHMARK.md).

A package of its own, outside the product: ``refproj`` imports it only when ``refproj bench``
runs. Modules: ``config`` (budgets and the run's settings), ``workload`` (databases created,
migrated and seeded; the changes figures write), ``baselines`` (naive N+1, live query, raw fetch),
``figures/`` (one module per figure with its goal), ``run`` (the order of a run), ``report``
(JSON and README.md), ``measure`` and ``machine`` (sampling, statistics, the machine described).

The harness creates and drops its own databases, ``refproj_bench_<profile>[_suffix]``, on the
server of the URL it is given; for the first profile it can instead use an existing database.
Results go to ``<output>/results/<UTC timestamp>.json`` and ``<output>/results/latest.json``,
and ``<output>/README.md`` is regenerated from them.
"""

from refproj_bench.config import FULL, QUICK, BenchConfig, Budget, Iterations
from refproj_bench.figures import evaluate_goals
from refproj_bench.report import render_markdown, write_outputs
from refproj_bench.run import run_bench

__all__ = [
    "FULL",
    "QUICK",
    "BenchConfig",
    "Budget",
    "Iterations",
    "evaluate_goals",
    "render_markdown",
    "run_bench",
    "write_outputs",
]

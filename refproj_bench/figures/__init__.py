"""The figures of BENCHMARK.md, one module each: what it measures (``measure*``), its goal
(``goals``), its rows in the figures table (``ROWS``) and how it is measured (``DEFINITIONS``).

``FIGURES`` is the order of the tables and of the goals.
"""

from __future__ import annotations

from refproj_bench.config import Json
from refproj_bench.figures import coalescing, detail, http, overview, refresh, staleness, write_cost

FIGURES = (overview, refresh, write_cost, coalescing, detail, staleness, http)


def evaluate_goals(results: Json) -> list[Json]:
    """The goals of BENCHMARK.md, each with the measured value and whether it is met."""
    return [goal for figure in FIGURES for goal in figure.goals(results)]

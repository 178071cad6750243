"""Figure 6: the detail read, ``Projection.get()`` round-robin over connections of the overview.

Goal (BENCHMARK.md): p50 <= 5 ms at M.
"""

from __future__ import annotations

from refproj.projection import Projection
from refproj_bench.config import Iterations, Json, Progress
from refproj_bench.measure import Cell, goal, ms, sample, stats


def measure(url: str, it: Iterations, say: Progress) -> Json:
    with Projection(url, read_reuse=0, staleness_bound=None) as proj:
        ids = [row["connector_instance_id"] for row in proj.list()]
        step = max(1, len(ids) // 50)
        chosen = ids[::step][:50]
        say(f"detail: get() over {len(chosen)} connections")
        position = 0

        def get() -> None:
            nonlocal position
            proj.get(chosen[position % len(chosen)])
            position += 1

        samples = sample(get, it.details)
    return {**stats(samples), "connections_sampled": len(chosen)}


def goals(results: Json) -> list[Json]:
    profiles: dict[str, Json] = results["profiles"]
    if "M" in profiles:
        p50 = profiles["M"]["detail"]["p50_ms"]
        return [goal("detail p50 at M", "<= 5 ms", "M", f"{ms(p50)} ms", p50 <= 5.0, p50)]
    return [
        goal(
            "detail p50 (goal is for M)",
            "<= 5 ms at M",
            name,
            f"{ms(p['detail']['p50_ms'])} ms",
            None,
            p["detail"]["p50_ms"],
        )
        for name, p in profiles.items()
    ]


def _cell(p: Json) -> str:
    return f"{ms(p['detail']['p50_ms'])} / {ms(p['detail']['p95_ms'])}"


ROWS: list[tuple[str, Cell]] = [("detail `get()`, p50 / p95 (ms)", _cell)]

DEFINITIONS = [
    "- **detail**: `Projection.get()` round-robin over up to 50 connections spread over the overview.",
]

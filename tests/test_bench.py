"""Smoke test of the benchmark harness: the tiny profile, tiny sample counts, every figure present.

It checks the shape and types of the results, not timings (a benchmark is not a test).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import psycopg

import refproj_bench as bench

TINY = bench.Iterations(
    overview_reads=bench.Budget(5, 2.0, 2),
    warm_reads=20,
    live_reads=bench.Budget(2, 2.0, 1),
    naive_reads=bench.Budget(2, 2.0, 1),
    details=bench.Budget(5, 2.0, 2),
    refreshes=bench.Budget(2, 2.0, 2),
    history_refreshes=bench.Budget(2, 2.0, 1),
    write_rounds=2,
    single_rows_per_block=20,
    batches_per_block=1,
    batch_rows=1000,
    staleness_seconds=1.5,
    list_threads=16,
    refresh_processes=2,
    refresh_threads=3,
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _distribution(figure: dict[str, Any]) -> None:
    assert figure["n"] >= 1
    for key in ("p50_ms", "p95_ms", "min_ms", "max_ms"):
        assert _number(figure[key]) and figure[key] >= 0, (key, figure)
    assert figure["min_ms"] <= figure["p50_ms"] <= figure["p95_ms"] <= figure["max_ms"]


def test_bench_tiny_profile_reports_every_figure(db_url: str, tmp_path: Path) -> None:
    config = bench.BenchConfig(
        profiles=["tiny"],
        existing_database=db_url,
        output_dir=tmp_path,
        iterations=TINY,
        name_suffix=f"_t{os.getpid()}",
        command="pytest tests/test_bench.py",
        progress=lambda message: None,
    )
    results = bench.run_bench(config)
    path = bench.write_outputs(results, tmp_path)
    table = bench.render_markdown(results)

    # Files: one timestamped JSON, latest.json with the same content, the README with the tables.
    assert path.parent == tmp_path / "results"
    assert json.loads(path.read_text()) == json.loads((tmp_path / "results" / "latest.json").read_text())
    assert json.loads(path.read_text()) == json.loads(json.dumps(results))
    readme = (tmp_path / "README.md").read_text()
    assert "pytest tests/test_bench.py" in readme and table in readme

    machine = results["machine"]
    assert machine["nproc"] >= 1 and _number(machine["memory_gb"])
    assert machine["postgresql"] and machine["python"]

    tiny = results["profiles"]["tiny"]
    assert tiny["counts"]["connections"] == 8 and tiny["counts"]["spine_events"] > 1000
    assert tiny["connections"] == 7
    for name in (
        "list_cold",
        "list_warm",
        "raw_fetch",
        "summaries_fetch",
        "live_query",
        "naive",
        "async_list_cold",
        "sync_list_cold",
    ):
        _distribution(tiny["overview"][name])
    ratios = ("ratio_naive_over_list_cold", "ratio_list_cold_over_raw_fetch", "ratio_async_over_sync_list")
    for name in ratios:
        assert _number(tiny["overview"][name]) and tiny["overview"][name] > 0
    # Statements per overview read: one for list(), one plus four per connection for the naive reads.
    assert tiny["statements"] == {"list": 1, "naive": 1 + 4 * 7}
    _distribution(tiny["refresh"])
    _distribution(tiny["detail"])
    for shape in ("single_row", "batch"):
        cost = tiny["write_cost"][shape]
        assert _number(cost["with_projection_us"]) and _number(cost["without_projection_us"])
        assert _number(cost["ratio"]) and cost["ratio"] > 0
    coalescing = tiny["coalescing"]
    assert coalescing["list_statements"] == 1
    assert 1 <= coalescing["list_statements_without_reuse"] <= 16
    assert coalescing["refresh_calls"] == 6 and coalescing["refresh_errors"] == 0
    # Gated, every call was queued in the database before the first refresh could finish.
    assert coalescing["refresh_gated"]["calls_queued_at_release"] == 6
    assert 1 <= coalescing["refreshes_executed"] <= 2
    assert coalescing["refreshes_executed"] == coalescing["refresh_calls_that_refreshed"]
    ungated = coalescing["refresh_ungated"]
    assert 1 <= ungated["refreshes_executed"] <= 6 and _number(ungated["call_start_spread_ms"])
    http = tiny["http"]
    for name in ("new", "new_no_reuse", "revalidate_304", "floor"):
        for clients in (1, 64):
            _distribution(http[f"{name}_{clients}"])
    _distribution(http["naive_1"])
    assert http["body_bytes"] > 1000
    for name in ("ratio_naive_over_new_1", "ratio_new_over_floor_64", "ratio_304_over_floor_64"):
        assert _number(http[name]) and http[name] > 0
    staleness = tiny["staleness"]
    assert staleness["writes"] > 5 and staleness["reads"] > 5
    assert 0 <= staleness["p50_s"] <= staleness["p95_s"] <= staleness["max_s"]
    assert staleness["bound_s"] == 2.0

    history = results["history"]
    assert history["profile"] == "tiny" and list(history["factors"]) == ["1", "3", "10"]
    events = [history["factors"][f]["spine_events"] for f in ("1", "3", "10")]
    assert events[0] < events[1] < events[2]
    for factor in history["factors"].values():
        _distribution(factor["refresh"])
    assert _number(history["ratio_max_over_min"])

    goals = {(goal["figure"], goal["profile"]): goal for goal in results["goals"]}
    assert len(goals) == 13
    assert all(goal["met"] in (True, False, None) for goal in goals.values())
    assert goals[("16 concurrent list()", "tiny")]["met"] is True
    assert "| figure | tiny |" in table and "### Goals" in table

    # The harness dropped every database it created and left the one it was given.
    with psycopg.connect(db_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"refproj_bench_tiny_t{os.getpid()}%",)
        ).fetchall()
    assert left == []

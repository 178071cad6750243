"""Figure 4: the cost of writing spine events with the projection installed, against a database
seeded identically at revision 0002 (source tables and summary index, no projection).

Goal (BENCHMARK.md): <= 1.5x per event for single-row transactions; batches reported.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

from refproj.seed import SEED_BASE_TIME
from refproj_bench.config import Iterations, Json, Progress
from refproj_bench.measure import Cell, goal, ratio, x
from refproj_bench.workload import targets

WRITE_SINGLE = """
INSERT INTO spine_events (
    event_type, status, actor_type, actor_id, source_kind, source_id, run_id, connector_instance_id,
    occurred_at, data)
VALUES ('run.progress_reported', 'ok', 'connector', %(connector_id)s, 'connector', %(connector_id)s,
        %(run_id)s, %(connection)s, %(occurred_at)s, %(data)s::jsonb)
"""

WRITE_BATCH = """
INSERT INTO spine_events (
    event_type, status, actor_type, actor_id, source_kind, source_id, run_id, connector_instance_id,
    occurred_at, data)
SELECT 'run.progress_reported', 'ok', 'connector', %(connector_id)s, 'connector', %(connector_id)s,
       b.run_id, %(connection)s, b.occurred_at, b.data::jsonb
FROM unnest(%(run_ids)s::text[], %(occurred_ats)s::timestamptz[], %(datas)s::text[])
    AS b (run_id, occurred_at, data)
"""


class EventSource:
    """Spine events of one connection, shaped like the seeded progress events, 50 per run."""

    def __init__(self, target: tuple[str, str], tag: str) -> None:
        self.target = target
        self.tag = tag
        self.n = 0
        self.at = SEED_BASE_TIME

    def next(self) -> tuple[str, datetime, str]:
        self.n += 1
        self.at += timedelta(milliseconds=250)
        data = json.dumps({"stream": "orders", "records_so_far": self.n * 25, "connector_instance_id": None})
        return f"bench_write_{self.tag}_{self.n // 50}", self.at, data


def _write_block(conn: psycopg.Connection[Any], source: EventSource, it: Iterations, batch: bool) -> float:
    """Seconds per event for one block of single-row transactions or of batches."""
    connector_id, connection = source.target
    if batch:
        statements: list[Json] = []
        for _ in range(it.batches_per_block):
            events = [source.next() for _ in range(it.batch_rows)]
            statements.append(
                {
                    "connector_id": connector_id,
                    "connection": connection,
                    "run_ids": [e[0] for e in events],
                    "occurred_ats": [e[1] for e in events],
                    "datas": [e[2] for e in events],
                }
            )
        started = time.perf_counter()
        for params in statements:
            conn.execute(WRITE_BATCH, params)
        return (time.perf_counter() - started) / (it.batches_per_block * it.batch_rows)
    rows: list[Json] = []
    for _ in range(it.single_rows_per_block):
        run_id, at, data = source.next()
        rows.append(
            {
                "connector_id": connector_id,
                "connection": connection,
                "run_id": run_id,
                "occurred_at": at,
                "data": data,
            }
        )
    started = time.perf_counter()
    for params in rows:
        conn.execute(WRITE_SINGLE, params)
    return (time.perf_counter() - started) / it.single_rows_per_block


def measure(url: str, noproj_url: str, it: Iterations, say: Progress) -> Json:
    say(
        f"write cost: {it.write_rounds} rounds of {it.single_rows_per_block} single-row transactions and"
        f" {it.batches_per_block} x {it.batch_rows}-row batches, with and without the projection"
    )
    per_event: dict[tuple[str, bool], list[float]] = {}
    with psycopg.connect(url, autocommit=True) as head, psycopg.connect(noproj_url, autocommit=True) as bare:
        target = targets(head)[0]
        databases = {"with": (head, EventSource(target, "w")), "without": (bare, EventSource(target, "wo"))}
        for round_no in range(it.write_rounds):
            order = ["with", "without"] if round_no % 2 == 0 else ["without", "with"]
            for batch in (False, True):
                for name in order:
                    conn, source = databases[name]
                    per_event.setdefault((name, batch), []).append(_write_block(conn, source, it, batch))

    def shape(batch: bool) -> Json:
        with_us = statistics.median(per_event[("with", batch)]) * 1e6
        without_us = statistics.median(per_event[("without", batch)]) * 1e6
        return {
            "with_projection_us": round(with_us, 2),
            "without_projection_us": round(without_us, 2),
            "ratio": ratio(with_us, without_us),
            "blocks": len(per_event[("with", batch)]),
        }

    return {"single_row": shape(False), "batch": {**shape(True), "rows_per_batch": it.batch_rows}}


def goals(results: Json) -> list[Json]:
    out: list[Json] = []
    for name, p in results["profiles"].items():
        single = p["write_cost"]["single_row"]["ratio"]
        batch = p["write_cost"]["batch"]["ratio"]
        out.append(
            goal(
                "spine write with projection / without",
                "<= 1.5x single-row, batches reported",
                name,
                f"{x(single)} single-row, {x(batch)} batch",
                None if single is None else single <= 1.5,
                {"single_row": single, "batch": batch},
            )
        )
    return out


def _cell(key: str) -> Cell:
    def cell(p: Json) -> str:
        w = p["write_cost"][key]
        return f"{w['with_projection_us']:,.1f} / {w['without_projection_us']:,.1f} ({x(w['ratio'])})"

    return cell


def _partitioned_cell(key: str) -> Cell:
    def cell(p: Json) -> str:
        w = p.get("write_cost_partitioned", {}).get(key)
        if w is None:
            return "-"
        return f"{w['with_projection_us']:,.1f} / {w['without_projection_us']:,.1f} ({x(w['ratio'])})"

    return cell


ROWS: list[tuple[str, Cell]] = [
    ("spine write, single-row: with / without projection (µs/event)", _cell("single_row")),
    ("spine write, 1,000-row batch: with / without projection (µs/event)", _cell("batch")),
    (
        "spine write, single-row: partitioned / plain spine_events, both with projection (µs/event)",
        _partitioned_cell("single_row"),
    ),
    (
        "spine write, 1,000-row batch: partitioned / plain spine_events, both with projection (µs/event)",
        _partitioned_cell("batch"),
    ),
]

DEFINITIONS = [
    "- **spine write cost**: single-row INSERTs, each its own transaction, and 1,000-row INSERT ...",
    "  SELECT FROM unnest(...) batches of run progress events, alternating block by block between",
    "  the benchmark database (projection installed) and a database seeded identically at revision",
    "  0002 (source tables and summary index, no projection); median microseconds per event.",
    "- **spine write cost on partitions**: the same blocks, alternating between a database whose",
    "  spine_events is partitioned by month (25 monthly partitions and a default one, the summary",
    "  index and refproj's triggers on each, writes routed through the parent) and the benchmark",
    "  database (plain spine_events), both with the projection, both seeded identically.",
]

"""Figure 3: refresh after a change, and refresh time against history size (factors 1, 3, 10).

Goal (BENCHMARK.md): refresh after a change at history x10 / x1 <= 1.5x (refreshes must not grow
with history). The history series is measured on separately seeded databases, side by side.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from refproj import migrate
from refproj_bench.config import BenchConfig, Iterations, Json, Progress
from refproj_bench.measure import Cell, goal, ms, ratio, sample, scalar, stats, timed, x
from refproj_bench.workload import Server, change, refresh, targets


def measure(url: str, it: Iterations, say: Progress) -> Json:
    say("refresh after a change")
    client: list[float] = []
    server: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        where = targets(conn)

        def one() -> None:
            change(conn, where[len(client) % len(where)], "refresh")
            elapsed, own = refresh(conn)
            client.append(elapsed / 1000)
            server.append(own / 1000)

        one()  # warm-up, not counted
        client.clear()
        server.clear()
        sample(one, it.refreshes, say=say, what="refresh")
    return {**stats(client), "server_p50_ms": stats(server)["p50_ms"]}


def _factor_name(factor: float) -> str:
    return f"{factor:g}".replace(".", "p")


def measure_history(server: Server, config: BenchConfig, profile: str, say: Progress) -> Json:
    it = config.iterations
    factors = list(config.history_factors)
    slow = (
        ""
        if profile in ("M", "L")
        else " (seeding M at history x10, ~30M spine events, takes too long on this machine)"
    )
    out: Json = {
        "profile": profile,
        "factors": {},
        "note": f"refresh time against history size is measured on profile {profile}{slow}",
    }
    urls: dict[float, str] = {}
    names: list[str] = []
    try:
        for factor in factors:
            name = f"refproj_bench_{profile}{config.name_suffix}_h{_factor_name(factor)}"
            say(f"history: creating {name} (history factor {factor:g})")
            # An existing database with a long history, then refproj installed on it: the source
            # tables first (revision 0001), the history, then the rest of the migrations and the
            # first build, each timed.
            url = server.create(name, "0001")
            names.append(name)
            counts, seed_s = server.seed(url, profile, history_factor=factor, seed_value=config.seed)
            say(f"history: migrating x{factor:g} to head (summary index built concurrently)")
            started = time.perf_counter()
            migrate.upgrade(url)
            migrate_s = time.perf_counter() - started
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE spine_events")
                say(f"history: first build of x{factor:g}")
                first_ms = refresh(conn)[0]
                say(f"history: sequential scan floor of x{factor:g}")
                floor = seq_scan_floor(conn)
            urls[factor] = url
            out["factors"][_factor_name(factor)] = {
                "history_factor": factor,
                "spine_events": counts.get("spine_events"),
                "runs": counts.get("runs"),
                "seed_s": seed_s,
                "migrate_s": round(migrate_s, 1),
                "first_refresh_ms": round(first_ms, 1),
                "seq_scan_floor_ms": floor,
                "first_build_over_floor": {
                    "serial": ratio(first_ms, floor["serial_ms"]),
                    "parallel": ratio(first_ms, floor["parallel_ms"]),
                },
            }
        samples: dict[float, list[float]] = {factor: [] for factor in factors}
        conns = {factor: psycopg.connect(urls[factor], autocommit=True) for factor in factors}
        try:
            where = {factor: targets(conns[factor]) for factor in factors}

            def one_round() -> None:
                for factor in factors:  # side by side: one refresh per database per round
                    ts = where[factor]
                    change(conns[factor], ts[len(samples[factor]) % len(ts)], "history")
                    samples[factor].append(refresh(conns[factor])[0] / 1000)

            one_round()  # warm-up, not counted
            for factor in factors:
                samples[factor].clear()
            sample(one_round, it.history_refreshes, say=say, what="history round")
        finally:
            for conn in conns.values():
                conn.close()
        for factor in factors:
            out["factors"][_factor_name(factor)]["refresh"] = stats(samples[factor])
        if factors:
            low, high = min(factors), max(factors)
            out["ratio_max_over_min"] = ratio(
                out["factors"][_factor_name(high)]["refresh"]["p50_ms"],
                out["factors"][_factor_name(low)]["refresh"]["p50_ms"],
            )
            out["ratio_factors"] = [low, high]
    finally:
        for name in names:
            server.drop(name)
    return out


# The least any per-run build does: one hash aggregate of every run event into one group per
# run id, nothing computed per group (the build's settings: no index walk, 128 MB of work_mem).
GROUP_BY_RUN = (
    "SELECT count(*) FROM (SELECT re.connector_id, re.run_id FROM refproj.run_events AS re"
    " GROUP BY re.connector_id, re.run_id) AS runs"
)


def seq_scan_floor(conn: psycopg.Connection[Any]) -> Json:
    """The floor of any first build: one sequential scan of spine_events (``SELECT count(*)``),
    with parallel workers off and as configured, in ms (best of two, the first warms the cache);
    and ``group_by_run_ms``, grouping the run events by run id with workers as configured, the
    least a build that writes one row per run can do."""
    out: Json = {}
    for name, workers in (("serial_ms", "0"), ("parallel_ms", None)):
        if workers is None:
            conn.execute("RESET max_parallel_workers_per_gather")
        else:
            conn.execute("SET max_parallel_workers_per_gather = " + workers)
        best = min(
            timed(lambda: conn.execute("SELECT count(*) FROM spine_events").fetchone()) for _ in range(2)
        )
        out[name] = round(best * 1000, 1)
    conn.execute("RESET max_parallel_workers_per_gather")
    out["parallel_workers"] = int(scalar(conn, "SHOW max_parallel_workers_per_gather"))
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL work_mem = '128MB'")
        best = min(timed(lambda: conn.execute(GROUP_BY_RUN).fetchone()) for _ in range(2))
    out["group_by_run_ms"] = round(best * 1000, 1)
    return out


def goals(results: Json) -> list[Json]:
    history = results.get("history")
    if not history or history.get("ratio_max_over_min") is None:
        return []
    value = history["ratio_max_over_min"]
    low, high = history["ratio_factors"]
    figure = f"refresh at history x{high:g} / x{low:g}"
    return [goal(figure, "<= 1.5x", history["profile"], x(value), value <= 1.5, value)]


def history_markdown(history: Json) -> list[str]:
    """The history series as a markdown table and its note."""
    out = [
        f"### Refresh after a change against history size (profile {history['profile']})",
        "",
        "| history factor | spine events | runs | refresh after a change, p50 / max (ms)"
        " | vs lowest factor | migrate onto the history (s) | first build (ms)"
        " | seq scan floor, serial / parallel (ms) | first build / floor, serial / parallel"
        " | group by run (ms) | first build / group by run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    factors = list(history["factors"].values())
    low = factors[0]["refresh"]["p50_ms"] if factors else None
    for f in factors:
        r = f["refresh"]
        out.append(
            f"| x{f['history_factor']:g} | {f['spine_events']:,} | {f['runs']:,} |"
            f" {ms(r['p50_ms'])} / {ms(r['max_ms'])} | {x(ratio(r['p50_ms'], low))} |"
            f" {f.get('migrate_s', '-')} | {ms(f['first_refresh_ms'])} |"
            f" {_floor(f)} |"
            f" {_floor_ratio(f)} |"
            f" {_group_by_run(f)} |"
        )
    return [*out, "", history["note"] + ".", ""]


def _floor(f: Json) -> str:
    floor = f.get("seq_scan_floor_ms")
    return "-" if floor is None else f"{ms(floor['serial_ms'])} / {ms(floor['parallel_ms'])}"


def _group_by_run(f: Json) -> str:
    grouping = (f.get("seq_scan_floor_ms") or {}).get("group_by_run_ms")
    if grouping is None:  # results from before it was measured
        return "- | -"
    return f"{ms(grouping)} | {x(ratio(f['first_refresh_ms'], grouping))}"


def _floor_ratio(f: Json) -> str:
    over = f.get("first_build_over_floor")
    return "-" if over is None else f"{x(over['serial'])} / {x(over['parallel'])}"


ROWS: list[tuple[str, Cell]] = [
    (
        "refresh after a change, p50 / max (ms)",
        lambda p: f"{ms(p['refresh']['p50_ms'])} / {ms(p['refresh']['max_ms'])}",
    ),
    ("first refresh after seeding (bulk load, one sample) (ms)", lambda p: ms(p["first_refresh_ms"])),
]

DEFINITIONS = [
    "- **refresh after a change**: insert a two-event run for one active connection, then time",
    "  `SELECT * FROM refproj.refresh_connection_summary()` from the client. The history series does",
    "  the same on databases seeded with `--history-factor` 1, 3 and 10, one refresh per database per",
    "  round so the factors are measured side by side. One untimed warm-up refresh comes first.",
    "- **first build against history size**: each history database is created at revision 0001 (the",
    "  source tables), seeded, then migrated to head (timed: the summary index built concurrently,",
    "  the projection created empty) and refreshed once (timed: the first build of run_facts and both",
    "  views). The floor is one sequential scan of spine_events, `SELECT count(*)`, best of two, with",
    "  `max_parallel_workers_per_gather = 0` and as configured. Group by run is the least a build",
    "  writing one row per run does: `refproj.run_events` grouped by (connector_id, run_id), nothing",
    "  computed per group, workers as configured, with the build's settings (no index scans, 128 MB",
    "  of work_mem), best of two.",
]

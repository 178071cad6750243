"""Figure 3: refresh after a change, and refresh time against history size (factors 1, 3, 10).

Goal (BENCHMARK.md): refresh after a change at history x10 / x1 <= 1.5x (refreshes must not grow
with history). The history series is measured on separately seeded databases, side by side.
"""

from __future__ import annotations

import psycopg

from refproj_bench.config import BenchConfig, Iterations, Json, Progress
from refproj_bench.measure import Cell, goal, ms, ratio, sample, stats, x
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
            url = server.create(name)
            names.append(name)
            counts, seed_s = server.seed(url, profile, history_factor=factor, seed_value=config.seed)
            with psycopg.connect(url, autocommit=True) as conn:
                say(f"history: first refresh of x{factor:g}")
                first_ms = refresh(conn)[0]
            urls[factor] = url
            out["factors"][_factor_name(factor)] = {
                "history_factor": factor,
                "spine_events": counts.get("spine_events"),
                "runs": counts.get("runs"),
                "seed_s": seed_s,
                "first_refresh_ms": round(first_ms, 1),
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
        " | vs lowest factor | first refresh after seeding (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    factors = list(history["factors"].values())
    low = factors[0]["refresh"]["p50_ms"] if factors else None
    for f in factors:
        r = f["refresh"]
        out.append(
            f"| x{f['history_factor']:g} | {f['spine_events']:,} | {f['runs']:,} |"
            f" {ms(r['p50_ms'])} / {ms(r['max_ms'])} | {x(ratio(r['p50_ms'], low))} |"
            f" {ms(f['first_refresh_ms'])} |"
        )
    return [*out, "", history["note"] + ".", ""]


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
]

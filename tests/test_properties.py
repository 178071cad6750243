"""Property tests: on random worlds, the SQL projection equals the reference model (tests/oracle.py).

Each example writes a random world into the source tables of this test's database, refreshes,
and compares whole JSON values: every run summary, the overview for a random clock (also filtered
by connector), and the detail and resolution of every visible connection and of connector ids.
The first property empties the source tables between examples (TRUNCATE: a full rebuild); the
second writes a first batch, refreshes, then inserts, updates and deletes a second batch (the
incremental path) and checks the overview before and after the second refresh and the live
detail in between.

REFPROJ_HYPOTHESIS_EXAMPLES sets the number of examples per property (default 60).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from refproj.settings import SOURCE_TABLES
from tests.oracle import (
    ActiveRun,
    Connection,
    Connector,
    Deep,
    Event,
    Oracle,
    RetainedConnection,
    RetainedStream,
    Sources,
    event_identity,
    expected_profile_key,
    is_run_event,
    json_path,
    max_staleness,
    run_sort_key,
)
from tests.world import overview_forms

EXAMPLES = int(os.environ.get("REFPROJ_HYPOTHESIS_EXAMPLES", "60"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # No "explain" phase: it reruns a failing example hundreds of times to annotate it.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

BASE = datetime(2026, 1, 5, tzinfo=UTC)
FAR_FUTURE = datetime(2999, 1, 1, 12, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Strategies: values
# ---------------------------------------------------------------------------------------------


def pick(*options: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of ``options``, equally likely (unlike st.one_of, which flattens nested one_ofs)."""
    return st.sampled_from(options).flatmap(lambda chosen: chosen)


# Any text PostgreSQL accepts in text and jsonb (no NUL, no lone surrogates).
any_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)


def incompressible(seed: int, length: int) -> str:
    """A long string that does not compress (hex of a hash chain)."""
    out = []
    block = str(seed).encode()
    while sum(map(len, out)) < length:
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:length]


# Long strings: incompressible ones of 3,000 and 300 characters, and long ones that compress well.
long_text = pick(
    st.builds(incompressible, st.integers(0, 1000), st.just(3000)),
    st.builds(incompressible, st.integers(0, 1000), st.just(300)),
    st.sampled_from(["é" * 5000, "x" * 20000, "🚀" * 700]),
)
# Numbers jsonb holds but a double cannot (written as exact JSON text, see exact_dumps): served
# when within +-1e308 (1e-400 reads as 0.0), else the value they sit in is malformed.
out_of_range_numbers = st.sampled_from(
    [
        Decimal("1e400"),
        Decimal("-1e309"),
        Decimal("1e308"),
        Decimal("1e-400"),
        Decimal("-1.5e-320"),
        Decimal("12345678901234567890123"),
    ]
)
# Nesting around the limit (64 levels) and far beyond it.
deep_values = st.builds(Deep, st.sampled_from([1, 2, 62, 63, 64, 65, 2000]))
json_scalar = pick(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), any_text, any_text, out_of_range_numbers
)
small_json = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(any_text, inner, max_size=2) | deep_values,
    max_leaves=4,
)


def exact_dumps(value: Any) -> str:
    """JSON text of a generated value: Decimals as exact numbers, Deep as its nested arrays, with
    no Python recursion per level of a Deep."""
    if isinstance(value, Deep):
        return "[" * value.depth + exact_dumps(value.leaf) + "]" * value.depth
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{exact_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(exact_dumps(v) for v in value) + "]"
    return json.dumps(value)


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=exact_dumps)


# Moments on one day (ties likely), a few with fractions of a second, rarely in 2999.
day_moments = st.builds(
    lambda minutes, micros: BASE + timedelta(minutes=minutes, microseconds=micros),
    st.integers(0, 600),
    st.sampled_from([0, 0, 0, 1, 500_000, 123_456]),
)
moments = pick(*[day_moments] * 9, st.just(FAR_FUTURE))
text_field = st.one_of(
    st.sampled_from(["connector_exit", "timeout", "capacity_full", ""]),
    any_text,
    long_text,
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
STATUSES = [
    "ok",
    "succeeded",
    "failed",
    "cancelled",
    "surface_failed",
    "abandoned",
    "rejected",
    "completed",
    "in_progress",
    "",
    "unknown",
]
EVENT_TYPES = {
    "run.started": "ok",
    "run.completed": "succeeded",
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "run.browser_surface_failed": "surface_failed",
    "run.abandoned": "abandoned",
    "run.browser_surface_waiting": "ok",
    "run.progress_reported": "ok",
    "run.browser_surface_": "ok",
    "sub.resource_written": "completed",
}
SETUP_KINDS = ["browser_enrollment_shell", "static_secret_draft", "manual_upload_draft"]

# ---------------------------------------------------------------------------------------------
# Strategies: source rows
# ---------------------------------------------------------------------------------------------

profile_keys = st.one_of(
    st.sampled_from(["acme_profile", "  padded  ", "\tshared\n", "", "   ", "x:y"]),
    any_text,
    st.integers(),
    st.none(),
)
staleness_values = st.one_of(
    st.sampled_from([0, 1, 30, 60, 0.5, 90.25, 3600, 86_400, 3_153_600_000, 3_153_600_001, -5, 1e12, 10**30]),
    st.sampled_from([Decimal("1e-400"), Decimal("-1e-400"), Decimal("1e400"), Decimal("2.5e-7")]),
    st.sampled_from(["3600", True, None, [60], {"s": 1}]),
    st.integers(0, 10**6),
)
stream_items = st.one_of(
    st.sampled_from(["messages", "files", "", "ünïcode"]),
    st.fixed_dictionaries({}, optional={"name": st.one_of(st.sampled_from(["orders", ""]), st.integers())}),
    st.integers(),
)
manifests = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "streams": st.one_of(st.lists(stream_items, max_size=4), st.sampled_from(["messages", {}])),
            "capabilities": st.one_of(
                st.fixed_dictionaries(
                    {"browser_surface": st.fixed_dictionaries({"profile_key": profile_keys})}
                ),
                st.sampled_from([{"browser_surface": "x"}, [], {"browser_surface": {}}]),
            ),
            "refresh_policy": st.one_of(
                st.fixed_dictionaries({"max_staleness_seconds": staleness_values}), st.just("daily")
            ),
        },
    ),
    st.sampled_from([[], "manifest", 7, None]),
)
display_names = st.one_of(st.none(), st.just(""), any_text, long_text)
source_bindings = st.one_of(
    st.fixed_dictionaries({"kind": st.sampled_from([*SETUP_KINDS, "oauth", "local"])}),
    st.sampled_from([{}, {"kind": 5}, [], "browser_enrollment_shell"]),
)
# A connector id of 1,400 random bytes: its connections' ids with it are longer than one btree
# entry holds (neither the application's insert nor the refresh may fail), yet short run ids of
# it still make run events (9 + 1,400 + run id within 2,000 bytes).
LONG_CONNECTOR = "k" + incompressible(9, 1399)
CONNECTOR_POOL = ["acme", "bank", "zü", LONG_CONNECTOR]
# Long run ids: one that keeps the three ids of a run event within 2,000 bytes (9 + 4 + 1,987 for
# acme), and one too long for the source/run summary index (not a run event, README).
RUN_ID_POOL = ["r1", "r2", "r3", "rü", "r" * 200, "r" * 1987, incompressible(7, 2900)]


def connection_candidates(connector_id: str) -> list[str]:
    """Instance ids for a connector: its own id (profile key = base alone), siblings, and another
    connector's id (so a detail id can be both a connection and a connector)."""
    other = next(c for c in CONNECTOR_POOL if c != connector_id)
    # And 2,600 random bytes: as long as the source table's own primary key still holds.
    long_id = "c" + incompressible(10 + CONNECTOR_POOL.index(connector_id), 2599)
    return [f"{connector_id}_work", f"{connector_id}_home", connector_id, f"{connector_id}:ü", other, long_id]


@st.composite
def connections_for(draw: st.DrawFn, connector_id: str, used: set[str]) -> list[Connection]:
    ids = draw(
        st.lists(st.sampled_from(connection_candidates(connector_id)), min_size=1, max_size=4, unique=True)
    )
    out = []
    for cid in ids:
        if cid in used:
            continue
        used.add(cid)
        out.append(
            Connection(
                connector_instance_id=cid,
                connector_id=connector_id,
                created_at=draw(day_moments) - timedelta(days=1),
                display_name=draw(display_names),
                status=draw(st.sampled_from(["active", "active", "active", "paused", "revoked", "draft"])),
                source_kind=draw(st.sampled_from(["account", "local_device", "browser_collector", "manual"])),
                source_binding=draw(source_bindings),
                revoked_at=draw(st.one_of(st.none(), moments)),
            )
        )
    return out


def surface_objects(surface_keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A data.browser_surface object: usually a profile key some connection expects."""
    expected = st.sampled_from(surface_keys or ["nobody"])
    return st.fixed_dictionaries(
        {},
        optional={
            "browser_surface_profile_key": pick(expected, expected, expected, text_field),
            "browser_surface_status": pick(st.just("surface_failed"), text_field),
            "browser_surface_wait_reason": pick(st.just("surface_unhealthy"), text_field),
        },
    )


@st.composite
def event_data(
    draw: st.DrawFn,
    event_type: str,
    identity_key: str | None,
    identity: str | None,
    surface_keys: list[str],
) -> Any:
    """A payload: mostly an object with some of the keys the projection reads, else garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.lists(st.integers(), max_size=2), any_text, st.integers(), st.none()))
    data = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "reason": text_field,
                "failure_reason": text_field,
                "known_gaps": st.one_of(st.lists(small_json, max_size=3), small_json, deep_values),
                "collection_facts": st.one_of(st.dictionaries(any_text, small_json, max_size=3), small_json),
                "records_emitted": st.one_of(
                    st.sampled_from(
                        [0, 5, 5.0, 5.5, -1, 9 * 10**18, 9 * 10**18 + 1, 10**30, 1e18, True, "7"]
                    ),
                    out_of_range_numbers,
                    st.integers(0, 10**6),
                ),
                "extra": small_json,
            },
        )
    )
    if event_type.startswith("run.browser_surface_") or draw(st.integers(0, 9)) == 0:
        objects = surface_objects(surface_keys)
        data["browser_surface"] = draw(pick(objects, objects, objects, text_field))
    if identity_key is not None:
        data[identity_key] = identity
    return data


TERMINAL_TYPES = [t for t, status in EVENT_TYPES.items() if status not in ("ok", "completed")]
run_shapes = st.one_of(
    # started, maybe progress, a terminal event (a complete run)
    st.tuples(
        st.just("run.started"),
        st.sampled_from(["run.progress_reported", "sub.resource_written", None]),
        st.sampled_from(["run.completed", "run.completed", *TERMINAL_TYPES]),
    ),
    # a browser-surface run
    st.tuples(
        st.sampled_from(["run.browser_surface_waiting", None]),
        st.sampled_from(["run.browser_surface_failed", "run.completed", "run.browser_surface_"]),
    ),
    # started only (orphaned or in progress), duplicate terminals, or anything
    st.tuples(st.just("run.started"), st.sampled_from(["run.progress_reported", None])),
    st.tuples(st.sampled_from(TERMINAL_TYPES), st.sampled_from(TERMINAL_TYPES)),
    st.lists(st.sampled_from(list(EVENT_TYPES)), min_size=1, max_size=4),
).map(lambda types: [t for t in types if t is not None])


@st.composite
def run_story(
    draw: st.DrawFn, connector_id: str, identities: list[str], surface_keys: list[str]
) -> list[dict[str, Any]]:
    """The events of one run id (as dicts without event_seq): mostly one identity, some without."""
    run_id = draw(st.sampled_from(RUN_ID_POOL))
    own = st.sampled_from(identities)
    identity = draw(
        pick(
            own,
            own,
            own,
            own,
            st.sampled_from(["ghost", "", "bank_work", "acme_work", None]),
            any_text,
            long_text,
        )
    )
    statuses = st.sampled_from(STATUSES)
    events = []
    for event_type in draw(run_shapes):
        where = draw(
            st.sampled_from(["column", "column", "data_instance", "data_connection", "none", "empty"])
        )
        this_identity = identity if draw(st.integers(0, 4)) else draw(own)
        column = this_identity if where == "column" else ("" if where == "empty" else None)
        key = {
            "data_instance": "connector_instance_id",
            "data_connection": "connection_id",
            "empty": "connection_id",
        }
        data = draw(event_data(event_type, key.get(where), this_identity, surface_keys))
        if where == "data_connection" and isinstance(data, dict) and draw(st.booleans()):
            data["connector_instance_id"] = draw(st.sampled_from([5, "", None]))
        natural = st.just(EVENT_TYPES[event_type])
        events.append(
            {
                "event_type": event_type,
                "occurred_at": draw(moments),
                "status": draw(pick(*[natural] * 6, statuses, statuses, statuses, any_text)),
                "source_kind": "connector",
                "source_id": connector_id,
                "run_id": run_id,
                "connector_instance_id": column,
                "data": data,
            }
        )
    return events


def surface_keys_of(connector: Connector, connections: list[Connection]) -> list[str]:
    """The profile keys the connections expect, and the keys an untrimmed manifest key would give."""
    keys = [expected_profile_key(connector, c) for c in connections]
    raw = json_path(connector.manifest, "capabilities", "browser_surface", "profile_key")
    if isinstance(raw, str) and raw:
        keys += [
            raw if c.connector_instance_id == c.connector_id else f"{raw}:{c.connector_instance_id}"
            for c in connections
        ]
    return sorted(set(keys))


stray_events = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(["run.completed", "run.started", "system.tick"]),
        "occurred_at": moments,
        "status": st.sampled_from(["succeeded", "ok"]),
        "source_kind": st.sampled_from(["connector", "system", None, incompressible(5, 2800)]),
        "source_id": st.sampled_from(["acme", "ghost", None, incompressible(3, 3000)]),
        "run_id": st.sampled_from(["r1", None, incompressible(4, 2900)]),
        "connector_instance_id": st.sampled_from(["acme_work", None]),
        "data": st.just({}),
    }
)


@st.composite
def event_batch(
    draw: st.DrawFn, connectors: list[Connector], connections: list[Connection], first_seq: int
) -> list[Event]:
    """Run stories of every connector plus stray events, shuffled, numbered in insertion order."""
    rows: list[dict[str, Any]] = []
    for connector in connectors:
        own = [c for c in connections if c.connector_id == connector.connector_id]
        identities = [c.connector_instance_id for c in own] or ["ghost"]
        keys = surface_keys_of(connector, own)
        for _ in range(draw(st.integers(0, 3))):
            rows.extend(draw(run_story(connector.connector_id, identities, keys)))
    rows.extend(draw(st.lists(stray_events, max_size=2)))
    shuffled = draw(st.permutations(rows))
    return [Event(event_seq=first_seq + i, **row) for i, row in enumerate(shuffled)]


@st.composite
def worlds(draw: st.DrawFn) -> Sources:
    connector_ids = draw(st.lists(st.sampled_from(CONNECTOR_POOL), min_size=1, max_size=3, unique=True))
    connectors = [
        Connector(cid, display_name=draw(display_names), manifest=draw(manifests)) for cid in connector_ids
    ]
    used: set[str] = set()
    connections = [c for cid in connector_ids for c in draw(connections_for(cid, used))]
    events = draw(event_batch(connectors, connections, 1))
    # Controller rows: mostly for a run that exists (its connector, run id and identity), some not.
    run_keys = sorted(
        {(e.source_id, e.run_id, event_identity(e)) for e in events if is_run_event(e)}, key=repr
    )
    instance_ids = [c.connector_instance_id for c in connections] + ["ghost_ci"]
    random_active = st.builds(
        ActiveRun,
        connector_instance_id=st.sampled_from(instance_ids),
        connector_id=st.sampled_from([*connector_ids, "ghost"]),
        # controller_active_runs.run_id is UNIQUE in the application's schema: no 2,900-character ids
        run_id=st.sampled_from(
            sorted({e.run_id for e in events if e.run_id is not None and len(e.run_id) <= 2000}) or ["r1"]
        ),
        started_at=moments,
    )
    existing_active = (
        st.sampled_from([k for k in run_keys if len(k[1]) <= 2000] or [("acme", "r1", None)]).flatmap(
            lambda key: st.builds(
                ActiveRun,
                # controller_active_runs' primary key cannot hold the huge identities events may carry
                connector_instance_id=(
                    st.just(key[2]) if key[2] and len(key[2]) <= 200 else st.sampled_from(instance_ids)
                ),
                connector_id=st.just(key[0]),
                run_id=st.just(key[1]),
                started_at=moments,
            )
        )
        if run_keys
        else random_active
    )
    active_runs = draw(
        st.lists(
            pick(existing_active, existing_active, random_active),
            max_size=3,
            unique_by=(lambda a: a.connector_instance_id, lambda a: a.run_id),
        )
    )
    return Sources(
        connectors=tuple(connectors),
        connections=tuple(connections),
        events=tuple(events),
        active_runs=tuple(active_runs),
        retained_connections=tuple(draw(retained_connection_rows(connections))),
        retained_streams=tuple(draw(retained_stream_rows(connections))),
    )


# Sizes whose sums leave the bigint range as well (README: then null).
sizes = pick(st.integers(0, 10**12), st.sampled_from([2**63 - 1, -(2**63), 2**62, -1, 1]))


def retained_connection_rows(connections: list[Connection]) -> st.SearchStrategy[list[RetainedConnection]]:
    ids = [c.connector_instance_id for c in connections] + ["ghost_ci"]
    return st.lists(
        st.builds(
            RetainedConnection,
            connector_instance_id=st.sampled_from(ids),
            connector_id=st.sampled_from(CONNECTOR_POOL),
            record_count=sizes,
            current_record_json_bytes=sizes,
            record_history_json_bytes=sizes,
            blob_bytes=sizes,
            computed_at=st.one_of(st.none(), moments),
        ),
        max_size=3,
        unique_by=lambda r: r.connector_instance_id,
    )


def retained_stream_rows(connections: list[Connection]) -> st.SearchStrategy[list[RetainedStream]]:
    ids = [c.connector_instance_id for c in connections] + ["ghost_ci"]
    return st.lists(
        st.builds(
            RetainedStream,
            connector_instance_id=st.sampled_from(ids),
            stream=st.sampled_from(["messages", "files", "", "ü", "Zeta", "a b"]),
            connector_id=st.sampled_from(CONNECTOR_POOL),
            record_count=sizes,
            current_record_json_bytes=sizes,
            record_history_json_bytes=sizes,
            blob_bytes=sizes,
            computed_at=st.one_of(st.none(), moments),
        ),
        max_size=5,
        unique_by=lambda r: (r.connector_instance_id, r.stream),
    )


# ---------------------------------------------------------------------------------------------
# Writing rows and reading the projection back
# ---------------------------------------------------------------------------------------------


def insert_connector(db: psycopg.Connection[Any], c: Connector) -> None:
    db.execute(
        "INSERT INTO connectors (connector_id, display_name, manifest) VALUES (%s, %s, %s)",
        (c.connector_id, c.display_name, jsonb(c.manifest)),
    )


def insert_connection(db: psycopg.Connection[Any], c: Connection) -> None:
    db.execute(
        "INSERT INTO connector_instances (connector_instance_id, connector_id, display_name, status,"
        " source_kind, source_binding, created_at, updated_at, revoked_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            c.connector_instance_id,
            c.connector_id,
            c.display_name,
            c.status,
            c.source_kind,
            jsonb(c.source_binding),
            c.created_at,
            c.created_at,
            c.revoked_at,
        ),
    )


def insert_events(db: psycopg.Connection[Any], events: list[Event]) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO spine_events (event_seq, event_type, occurred_at, status, source_kind, source_id,"
            " run_id, connector_instance_id, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    e.event_seq,
                    e.event_type,
                    e.occurred_at,
                    e.status,
                    e.source_kind,
                    e.source_id,
                    e.run_id,
                    e.connector_instance_id,
                    jsonb(e.data),
                )
                for e in events
            ],
        )


def insert_active_run(db: psycopg.Connection[Any], a: ActiveRun) -> None:
    db.execute(
        "INSERT INTO controller_active_runs (connector_instance_id, connector_id, run_id, started_at)"
        " VALUES (%s, %s, %s, %s)",
        (a.connector_instance_id, a.connector_id, a.run_id, a.started_at),
    )


def upsert_retained(db: psycopg.Connection[Any], row: RetainedConnection | RetainedStream) -> None:
    values = dataclasses.asdict(row)
    table = "retained_size_stream" if isinstance(row, RetainedStream) else "retained_size_connection"
    key = "connector_instance_id, stream" if isinstance(row, RetainedStream) else "connector_instance_id"
    columns = ", ".join(values)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
    db.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(values))})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}",
        list(values.values()),
    )


def load(db: psycopg.Connection[Any], world: Sources) -> None:
    """Empty the six source tables and write ``world`` in one transaction."""
    with db.transaction():
        db.execute(f"TRUNCATE {', '.join(SOURCE_TABLES)}")
        for connector in world.connectors:
            insert_connector(db, connector)
        for connection in world.connections:
            insert_connection(db, connection)
        insert_events(db, list(world.events))
        for active in world.active_runs:
            insert_active_run(db, active)
        for row in (*world.retained_connections, *world.retained_streams):
            upsert_retained(db, row)


def refresh(db: psycopg.Connection[Any]) -> None:
    """The refresh must never fail, whatever the payloads."""
    row = db.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone()
    assert row == (True,)


def sql_detail(db: psycopg.Connection[Any], requested: str, at: datetime, run_limit: int = 1000) -> Any:
    """The detail as served (what Projection.get() parses)."""
    row = db.execute(
        "SELECT refproj.connection_detail_json(%s, %s, %s)", (requested, run_limit, at)
    ).fetchone()
    assert row is not None
    return None if row[0] is None else json.loads(row[0])


def sql_resolution(db: psycopg.Connection[Any], requested: str) -> Any:
    rows = db.execute("SELECT to_jsonb(r) FROM refproj.resolve_connection(%s) AS r", (requested,)).fetchall()
    assert len(rows) == 1
    return rows[0][0]


def sql_run_summaries(db: psycopg.Connection[Any]) -> list[Any]:
    rows = db.execute("SELECT to_jsonb(r) FROM refproj.run_summaries AS r").fetchall()
    return sorted((row[0] for row in rows), key=run_sort_key)


def detail_ids(world: Sources) -> list[str]:
    """Every connection id (visible or not), every connector id, and an unknown id."""
    ids = [c.connector_instance_id for c in world.connections] + [c.connector_id for c in world.connectors]
    return sorted({*ids, "nope"})


def read_clocks(world: Sources) -> st.SearchStrategy[datetime]:
    """Read times: any moment, and the staleness boundaries of every successful run (±1 µs)."""
    oracle = Oracle(world)
    connectors = {c.connector_id: c for c in world.connectors}
    edges = [
        run.last_at + max_staleness(connectors[run.connector_id]) + timedelta(microseconds=delta)
        for run in oracle.runs
        if run.status == "succeeded" and run.connector_id in connectors and run.last_at < FAR_FUTURE
        for delta in (-1, 0, 1)
    ]
    later = st.sampled_from([BASE + timedelta(days=3), BASE - timedelta(days=1)])
    return pick(moments, later, st.sampled_from(edges)) if edges else pick(moments, later)


def assert_overview(db: psycopg.Connection[Any], oracle: Oracle, at: datetime) -> None:
    """connection_summaries() equals the model, and the JSON text the shim serves says the same."""
    for connector_id in [None, *(c.connector_id for c in oracle.sources.connectors)]:
        rows, served = overview_forms(db, at, connector_id)
        assert rows == oracle.overview(at, connector_id), connector_id
        assert served == rows, connector_id


def assert_live(db: psycopg.Connection[Any], oracle: Oracle, at: datetime) -> None:
    """Run summaries, resolution and detail are computed live from the source tables."""
    assert sql_run_summaries(db) == oracle.run_summaries()
    for requested in detail_ids(oracle.sources):
        assert sql_resolution(db, requested) == oracle.resolve(requested), requested
        assert sql_detail(db, requested, at) == oracle.detail(requested, 1000, at), requested
    # A short run limit keeps the latest runs only.
    for connection in oracle.visible_connections()[:2]:
        requested = connection.connector_instance_id
        assert sql_detail(db, requested, at, 1) == oracle.detail(requested, 1, at), requested


def assert_matches_oracle(db: psycopg.Connection[Any], world: Sources, at: datetime) -> None:
    oracle = Oracle(world)
    assert_live(db, oracle, at)
    assert_overview(db, oracle, at)


# ---------------------------------------------------------------------------------------------
# Property 1: a full rebuild equals the model
# ---------------------------------------------------------------------------------------------


def check_rebuild(db: psycopg.Connection[Any], world: Sources, at: datetime) -> None:
    load(db, world)
    refresh(db)
    assert_matches_oracle(db, world, at)


@PROPERTY_SETTINGS
@given(world=worlds(), data=st.data())
def test_rebuilt_projection_equals_the_model(
    db: psycopg.Connection[Any], world: Sources, data: st.DataObject
) -> None:
    check_rebuild(db, world, data.draw(read_clocks(world), label="at"))


# ---------------------------------------------------------------------------------------------
# Property 2: incremental maintenance (a second batch of inserts, updates, deletes) equals the model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One write of the second batch: ``op`` with its arguments (readable in a failing example)."""

    op: str
    args: tuple[Any, ...] = ()


def apply_change(db: psycopg.Connection[Any], world: Sources, change: Change) -> Sources:
    """Write ``change`` to the database and return the source rows after it."""
    replace = dataclasses.replace
    match change.op, change.args:
        case "add_events", (events,):
            insert_events(db, list(events))
            return replace(world, events=world.events + tuple(events))
        case "update_event", (seq, column, value):
            db.execute(
                f"UPDATE spine_events SET {column} = %s WHERE event_seq = %s",
                (jsonb(value) if column == "data" else value, seq),
            )
            events = tuple(replace(e, **{column: value}) if e.event_seq == seq else e for e in world.events)
            return replace(world, events=events)
        case "delete_event", (seq,):
            db.execute("DELETE FROM spine_events WHERE event_seq = %s", (seq,))
            return replace(world, events=tuple(e for e in world.events if e.event_seq != seq))
        case "set_active_run", (active,):
            # Replaces the controller rows that conflict with it (both keys are unique).
            with db.transaction():
                db.execute(
                    "DELETE FROM controller_active_runs WHERE connector_instance_id = %s OR run_id = %s",
                    (active.connector_instance_id, active.run_id),
                )
                insert_active_run(db, active)
            kept = tuple(
                a
                for a in world.active_runs
                if a.connector_instance_id != active.connector_instance_id and a.run_id != active.run_id
            )
            return replace(world, active_runs=(*kept, active))
        case "clear_active_runs", ():
            db.execute("DELETE FROM controller_active_runs")
            return replace(world, active_runs=())
        case "update_connection", (instance_id, column, value):
            db.execute(
                f"UPDATE connector_instances SET {column} = %s WHERE connector_instance_id = %s",
                (jsonb(value) if column == "source_binding" else value, instance_id),
            )
            connections = tuple(
                replace(c, **{column: value}) if c.connector_instance_id == instance_id else c
                for c in world.connections
            )
            return replace(world, connections=connections)
        case "delete_connection", (instance_id,):
            db.execute("DELETE FROM connector_instances WHERE connector_instance_id = %s", (instance_id,))
            kept_connections = tuple(c for c in world.connections if c.connector_instance_id != instance_id)
            return replace(world, connections=kept_connections)
        case "update_manifest", (connector_id, manifest):
            db.execute(
                "UPDATE connectors SET manifest = %s WHERE connector_id = %s", (jsonb(manifest), connector_id)
            )
            connectors = tuple(
                replace(c, manifest=manifest) if c.connector_id == connector_id else c
                for c in world.connectors
            )
            return replace(world, connectors=connectors)
        case "put_retained_stream", (row,):
            upsert_retained(db, row)
            kept_streams = tuple(
                s
                for s in world.retained_streams
                if (s.connector_instance_id, s.stream) != (row.connector_instance_id, row.stream)
            )
            return replace(world, retained_streams=(*kept_streams, row))
        case "drop_retained_connections", ():
            db.execute("DELETE FROM retained_size_connection")
            return replace(world, retained_connections=())
    raise AssertionError(f"unknown change {change}")


def change(op: str, *args: st.SearchStrategy[Any]) -> st.SearchStrategy[Change]:
    return st.tuples(*args).map(lambda values: Change(op, values))


@st.composite
def changes(draw: st.DrawFn, world: Sources) -> list[Change]:
    """A second batch: new events, and updates and deletes of every kind of source row."""
    seqs = [e.event_seq for e in world.events]
    ids = [c.connector_instance_id for c in world.connections]
    connector_ids = [c.connector_id for c in world.connectors]
    run_ids = sorted({e.run_id for e in world.events if e.run_id is not None and len(e.run_id) <= 2000}) or [
        "r1"
    ]
    first_seq = max(seqs, default=0) + 1
    active = st.builds(
        ActiveRun,
        connector_instance_id=st.sampled_from([*ids, "ghost_ci"]),
        connector_id=st.sampled_from(connector_ids),
        run_id=st.sampled_from(run_ids),
        started_at=moments,
    )
    choices = [
        change("set_active_run", active),
        change("clear_active_runs"),
        change("drop_retained_connections"),
        change("update_manifest", st.sampled_from(connector_ids), manifests),
    ]
    if seqs:
        seq = st.sampled_from(seqs)
        event_updates = {
            "status": st.sampled_from(STATUSES),
            "occurred_at": moments,
            "run_id": st.sampled_from(RUN_ID_POOL),
            "connector_instance_id": st.sampled_from([*ids, None, ""]),
            "source_kind": st.sampled_from(["connector", "system"]),
            "event_type": st.sampled_from(list(EVENT_TYPES)),
            "data": event_data("run.browser_surface_failed", None, None, ["acme:acme_work", "acme"]),
        }
        choices += [change("update_event", seq, st.just(col), v) for col, v in event_updates.items()]
        choices.append(change("delete_event", seq))
    if ids:
        instance = st.sampled_from(ids)
        connection_updates = {
            "status": st.sampled_from(["active", "paused", "revoked", "draft"]),
            "source_binding": source_bindings,
            "display_name": display_names,
        }
        choices += [
            change("update_connection", instance, st.just(col), v) for col, v in connection_updates.items()
        ]
        choices.append(change("delete_connection", instance))
        stream_row = st.builds(
            RetainedStream,
            connector_instance_id=instance,
            stream=st.sampled_from(["messages", "new"]),
            connector_id=st.sampled_from(CONNECTOR_POOL),
            record_count=sizes,
        )
        choices.append(change("put_retained_stream", stream_row))
    batch = []
    for _ in range(draw(st.integers(1, 6))):
        # Each insert batch numbers its events after every earlier one (at most 38 per batch).
        new_events = event_batch(list(world.connectors), list(world.connections), first_seq).map(tuple)
        batch.append(draw(st.one_of(change("add_events", new_events), *choices)))
        first_seq += 100
    return batch


@PROPERTY_SETTINGS
@given(world=worlds(), data=st.data())
def test_incremental_projection_equals_the_model(
    db: psycopg.Connection[Any], world: Sources, data: st.DataObject
) -> None:
    at = data.draw(read_clocks(world), label="at")
    check_rebuild(db, world, at)

    after = world
    for each in data.draw(changes(world), label="changes"):
        after = apply_change(db, after, each)
    # Not refreshed yet: the overview still shows the first batch; the detail is already live.
    assert_overview(db, Oracle(world), at)
    assert_live(db, Oracle(after), at)

    refresh(db)
    assert_matches_oracle(db, after, data.draw(read_clocks(after), label="at after"))


@pytest.fixture(autouse=True)
def _code_point_collation(db: psycopg.Connection[Any]) -> None:
    """The model sorts text by code point, as the test server's C.UTF-8 collation does."""
    row = db.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()").fetchone()
    assert row is not None and row[0] in ("C", "POSIX", "C.UTF-8", "C.utf8"), row


# ---------------------------------------------------------------------------------------------
# Regressions: minimal examples of disagreements the properties found between the SQL and DOMAIN.md
# ---------------------------------------------------------------------------------------------

HUGE = incompressible(0, 3000)


@pytest.mark.parametrize(
    "event",
    [
        Event(1, "run.started", BASE, source_id="acme", run_id="r1", connector_instance_id=HUGE),
        Event(1, "run.started", BASE, source_id="acme", run_id="r1", data={"connection_id": HUGE}),
        Event(
            1,
            "run.browser_surface_failed",
            BASE,
            status="surface_failed",
            source_id="acme",
            run_id="r1",
            data={"browser_surface": {"browser_surface_profile_key": HUGE}},
        ),
    ],
    ids=["identity_column", "data_connection_id", "browser_surface_profile_key"],
)
def test_regression_huge_identity_or_profile_key_never_fails_the_refresh(
    db: psycopg.Connection[Any], event: Event
) -> None:
    """DOMAIN.md §3: "huge values ... never fail the projection". A 3,000-character identity or
    browser profile key (incompressible) is a legal spine row, but refproj.refresh_connection_summary()
    stores it in refproj.run_facts.match_token, and the btree index run_facts_latest_idx rejects it
    ("index row size ... exceeds btree version 4 maximum 2704"). The run stays in dirty_runs, so every
    later refresh fails too and the overview of every connection stops moving. Per DOMAIN.md the
    refresh succeeds and the run is unattributed (no connection has that id or key)."""
    world = Sources(
        connectors=(Connector("acme"),),
        connections=(Connection("acme_work", "acme", BASE - timedelta(days=1)),),
        events=(event,),
    )
    check_rebuild(db, world, BASE)


def surface_failure_world(manifest_key: str, browser_surface: dict[str, Any]) -> Sources:
    """acme (its manifest's profile_key ``manifest_key``) with one connection, acme_work, and one
    browser-surface failure reporting ``browser_surface``."""
    return Sources(
        connectors=(
            Connector("acme", manifest={"capabilities": {"browser_surface": {"profile_key": manifest_key}}}),
        ),
        connections=(Connection("acme_work", "acme", BASE - timedelta(days=1)),),
        events=(
            Event(
                1,
                "run.browser_surface_failed",
                BASE,
                status="surface_failed",
                source_id="acme",
                run_id="r1",
                data={"browser_surface": browser_surface},
            ),
        ),
    )


def test_regression_manifest_profile_key_is_trimmed_of_tabs_and_newlines(db: psycopg.Connection[Any]) -> None:
    """DOMAIN.md §4: the expected key's base is the manifest profile_key "trimmed". The SQL
    (refproj.connection_keys) uses btrim(), which strips spaces only, so a manifest key "\\tshared\\n"
    makes acme_work expect "\\tshared\\n:acme_work" and the browser run reporting "shared:acme_work"
    is unattributed. Per DOMAIN.md it is acme_work's last run (failure reason surface_unhealthy)."""
    world = surface_failure_world(
        "\tshared\n",
        {
            "browser_surface_profile_key": "shared:acme_work",
            "browser_surface_wait_reason": "surface_unhealthy",
        },
    )
    assert Oracle(world).overview(BASE)[0]["last_run"]["failure_reason"] == "surface_unhealthy"
    check_rebuild(db, world, BASE)


def test_regression_manifest_profile_key_keeps_its_letters(db: psycopg.Connection[Any]) -> None:
    """Found by test_rebuilt_projection_equals_the_model: the trim set was written E' \\t\\n\\r\\f\\v',
    but PostgreSQL has no \\v escape, so it meant the letter v. A manifest key "vault" became
    "ault", and acme_work's browser runs reporting "vault:acme_work" went unattributed."""
    world = surface_failure_world("vault\v", {"browser_surface_profile_key": "vault:acme_work"})
    assert Oracle(world).overview(BASE)[0]["last_run"]["run_id"] == "r1"
    check_rebuild(db, world, BASE)
    assert db.execute(
        "SELECT expected_profile_key FROM refproj.connection_keys WHERE connector_instance_id = 'acme_work'"
    ).fetchone() == ("vault:acme_work",)

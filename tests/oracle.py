"""A reference model of DOMAIN.md in plain Python, used only by the property tests.

It reads plain rows of the six source tables (the dataclasses below) and computes what the SQL
serves, as the JSON values ``to_jsonb`` gives for them:

- ``Oracle.run_summaries()``: the rows of ``refproj.run_summaries``;
- ``Oracle.overview(at)``: ``refproj.connection_summaries(at)``, in order;
- ``Oracle.detail(id, run_limit, at)``: ``refproj.connection_detail(id, run_limit, at)``;
- ``Oracle.resolve(id)``: ``refproj.resolve_connection(id)``.

Each rule is one small function citing its DOMAIN.md section ("§3"); where DOMAIN.md is silent
the model follows README.md "Decisions where the spec is silent" (cited as "README").

What the mirror assumes: timestamps are timezone-aware and rendered as PostgreSQL's ``to_jsonb``
renders ``timestamptz`` in a UTC session; text sorts by code point (the C / C.UTF-8 collation of
the test server).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

Json = Any

# ---------------------------------------------------------------------------------------------
# Source rows (§2). Only the columns the projection reads.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connector:
    connector_id: str
    display_name: str | None = None
    manifest: Json = field(default_factory=dict)


@dataclass(frozen=True)
class Connection:
    connector_instance_id: str
    connector_id: str
    created_at: datetime
    display_name: str | None = None
    status: str = "active"
    source_kind: str = "account"
    source_binding: Json = field(default_factory=dict)
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Event:
    event_seq: int
    event_type: str
    occurred_at: datetime
    status: str = "ok"
    source_kind: str | None = "connector"
    source_id: str | None = None
    run_id: str | None = None
    connector_instance_id: str | None = None
    data: Json = field(default_factory=dict)


@dataclass(frozen=True)
class ActiveRun:
    connector_instance_id: str
    connector_id: str
    run_id: str
    started_at: datetime


@dataclass(frozen=True)
class RetainedConnection:
    connector_instance_id: str
    connector_id: str
    record_count: int = 0
    current_record_json_bytes: int = 0
    record_history_json_bytes: int = 0
    blob_bytes: int = 0
    computed_at: datetime | None = None


@dataclass(frozen=True)
class RetainedStream:
    connector_instance_id: str
    stream: str
    connector_id: str
    record_count: int = 0
    current_record_json_bytes: int = 0
    record_history_json_bytes: int = 0
    blob_bytes: int = 0
    computed_at: datetime | None = None


@dataclass(frozen=True)
class Sources:
    connectors: tuple[Connector, ...] = ()
    connections: tuple[Connection, ...] = ()
    events: tuple[Event, ...] = ()
    active_runs: tuple[ActiveRun, ...] = ()
    retained_connections: tuple[RetainedConnection, ...] = ()
    retained_streams: tuple[RetainedStream, ...] = ()


# ---------------------------------------------------------------------------------------------
# Constants of the rules
# ---------------------------------------------------------------------------------------------

# §3 terminal event types.
TERMINAL_TYPES = frozenset(
    {"run.completed", "run.failed", "run.cancelled", "run.browser_surface_failed", "run.abandoned"}
)
# §3 statuses that do not count ("non-empty and not unknown").
NO_STATUS = frozenset({"", "unknown"})
# §3 failure_reason: the first event with one of these statuses.
FAILURE_EVENT_STATUSES = frozenset({"failed", "rejected"})
# §4 failures_since_last_success counts these.
COUNTED_FAILURES = frozenset({"failed", "surface_failed", "abandoned"})
# §5 freshness and health: a last run with one of these statuses is failed-like.
FAILED_LIKE = frozenset({"failed", "surface_failed", "cancelled", "abandoned"})
# §5 visibility: revoked connections with these source_binding kinds are retired setup attempts.
RETIRED_SETUP_KINDS = frozenset({"browser_enrollment_shell", "static_secret_draft", "manual_upload_draft"})
# §5 max_staleness default; README: manifest values count only between 0 and 100 years.
DEFAULT_MAX_STALENESS = timedelta(hours=24)
MAX_STALENESS_LIMIT_SECONDS = 3_153_600_000
# README: records_emitted counts only as a whole number between 0 and 9e18.
RECORDS_EMITTED_LIMIT = 9 * 10**18
# §4 "trimmed": surrounding whitespace is not part of a manifest profile key.
WHITESPACE = " \t\n\r\f\v"


# ---------------------------------------------------------------------------------------------
# JSON and rendering helpers
# ---------------------------------------------------------------------------------------------


def json_text(obj: Json, key: str) -> str | None:
    """README: a payload text field counts only when it is a non-empty JSON string (§3: a
    malformed payload yields null)."""
    if isinstance(obj, dict):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def json_path(obj: Json, *keys: str) -> Json:
    """obj.k1.k2... through JSON objects only; None when any step is not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


@dataclass(frozen=True)
class Deep:
    """A JSON array nested ``depth`` levels around ``leaf`` ([[...[leaf]...]]), kept flat so that
    thousands of levels cost no Python recursion (tests/test_properties.py writes it as text)."""

    depth: int
    leaf: int = 1


def is_json_number(value: Json) -> bool:
    """Numbers are ints, floats, and Decimals (exact JSON numbers a float cannot hold)."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def exact_number(value: int | float | Decimal) -> Decimal:
    """The exact decimal PostgreSQL's jsonb holds for a number sent as JSON."""
    return value if isinstance(value, Decimal) else Decimal(json.dumps(value))


# README: a served payload value has nothing at nesting level 64 or deeper and no number beyond
# +-1e308 (refproj.jsonb_servable).
MAX_SERVED_LEVEL = 64
MAX_SERVED_NUMBER = Decimal("1e308")


def servable(value: Json) -> bool:
    """refproj.jsonb_servable: every item above nesting level 64, every number within +-1e308."""
    stack: list[tuple[Json, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Deep):
            item, level = item.leaf, level + item.depth
        if level >= MAX_SERVED_LEVEL:
            return False
        if is_json_number(item) and abs(exact_number(item)) > MAX_SERVED_NUMBER:
            return False
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return True


def served(value: Json) -> Json:
    """What a client parsing the served JSON (json.loads) gets for a servable value: jsonb prints
    a number with no fraction digits when its exponent is >= 0 (an int), else with them (a
    float; 1e-400 becomes 0.0)."""
    if isinstance(value, Deep):
        out: Json = value.leaf
        for _ in range(value.depth):
            out = [out]
        return out
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        return int(value) if exponent >= 0 else float(value)
    if isinstance(value, dict):
        return {key: served(item) for key, item in value.items()}
    if isinstance(value, list):
        return [served(item) for item in value]
    return value


def int64_or_none(value: int) -> int | None:
    """README: a sum of bigint columns outside the bigint range is null (refproj.bigint_or_null)."""
    return value if -(2**63) <= value < 2**63 else None


def iso(moment: datetime | None) -> str | None:
    """A timestamptz as to_jsonb renders it in UTC: seconds, trimmed fraction, +00:00."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "+00:00"


def interval_seconds(span: timedelta) -> float:
    """extract(epoch FROM interval), a JSON number."""
    return (span // timedelta(microseconds=1)) / 1_000_000


# ---------------------------------------------------------------------------------------------
# §3 Runs
# ---------------------------------------------------------------------------------------------


# README: spine rows whose source_kind, source_id and run_id exceed this many bytes together
# are not run events (the source/run summary index cannot hold them).
MAX_RUN_KEY_BYTES = 2000


def is_run_event(event: Event) -> bool:
    """§3: a spine row with a run_id and source_kind 'connector'; source_id is the connector.
    README: the three ids within 2,000 bytes together."""
    return (
        event.run_id is not None
        and event.source_kind == "connector"
        and event.source_id is not None
        and len(f"{event.source_kind}{event.source_id}{event.run_id}".encode()) <= MAX_RUN_KEY_BYTES
    )


def event_identity(event: Event) -> str | None:
    """§3 event identity: the column, else data.connector_instance_id, else data.connection_id
    (non-empty strings only)."""
    if event.connector_instance_id:
        return event.connector_instance_id
    return json_text(event.data, "connector_instance_id") or json_text(event.data, "connection_id")


def is_terminal(event: Event) -> bool:
    """§3 terminal event types."""
    return event.event_type in TERMINAL_TYPES


def has_status(event: Event) -> bool:
    """§3: a status that is non-empty and not 'unknown'."""
    return event.status not in NO_STATUS


def is_browser_surface(event: Event) -> bool:
    """§3: type starts with run.browser_surface_ and data.browser_surface is an object."""
    return event.event_type.startswith("run.browser_surface_") and isinstance(
        json_path(event.data, "browser_surface"), dict
    )


def event_reason(event: Event) -> str | None:
    """§3 failure_reason: an event's data.reason, else its data.failure_reason."""
    return json_text(event.data, "reason") or json_text(event.data, "failure_reason")


RunKey = tuple[str, str, str | None]


def group_runs(events: Iterable[Event]) -> dict[RunKey, list[Event]]:
    """§3 a run is (connector_id, run_id, identity). Events without identity join the run id's
    single identity, are ignored when it has several, and (README) form one legacy run with
    identity None when the run id has no identity at all. Events are kept in event_seq order."""
    by_run_id: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in events:
        if is_run_event(event):
            assert event.source_id is not None and event.run_id is not None
            by_run_id[(event.source_id, event.run_id)].append(event)
    runs: dict[RunKey, list[Event]] = defaultdict(list)
    for (connector_id, run_id), run_events in by_run_id.items():
        identities = {event_identity(e) for e in run_events} - {None}
        for event in run_events:
            identity = event_identity(event)
            if identity is None and len(identities) == 1:
                identity = next(iter(identities))
            elif identity is None and identities:
                continue
            runs[(connector_id, run_id, identity)].append(event)
    return {key: sorted(evs, key=lambda e: e.event_seq) for key, evs in runs.items()}


def winning_terminal(events: Sequence[Event]) -> Event | None:
    """§3 status rule 1: the terminal event with a status and the highest event_seq."""
    candidates = [e for e in events if is_terminal(e) and has_status(e)]
    return candidates[-1] if candidates else None


def newest_surface_event(events: Sequence[Event]) -> Event | None:
    """§3: the run's newest browser-surface event (by event_seq)."""
    candidates = [e for e in events if is_browser_surface(e)]
    return candidates[-1] if candidates else None


def controller_runs_it(key: RunKey, active_runs: Iterable[ActiveRun]) -> bool:
    """§3 rule 2 "controller_active_runs holds that run_id"; README: the row must also be for
    the run's connector and, when the run has an identity, for that connection."""
    connector_id, run_id, identity = key
    return any(
        a.run_id == run_id
        and a.connector_id == connector_id
        and (identity is None or a.connector_instance_id == identity)
        for a in active_runs
    )


def run_status(events: Sequence[Event], terminal: Event | None, controller_running: bool) -> str:
    """§3 status rules 1-3."""
    if terminal is not None:
        return terminal.status
    if any(e.event_type == "run.started" for e in events):
        return "in_progress" if controller_running else "failed"
    with_status = [e for e in events if has_status(e)]
    return with_status[-1].status if with_status else "unknown"


def is_orphaned(events: Sequence[Event], terminal: Event | None, controller_running: bool) -> bool:
    """§3: rule 2's failed (a run.started nobody finished and the controller does not run)."""
    return terminal is None and not controller_running and any(e.event_type == "run.started" for e in events)


def first_failure_reason(events: Sequence[Event]) -> str | None:
    """§3: the reason of the first failed/rejected event; README: the first such event that
    carries a reason."""
    for event in events:
        if event.status in FAILURE_EVENT_STATUSES and event_reason(event) is not None:
            return event_reason(event)
    return None


def failure_reason(
    status: str,
    terminal: Event | None,
    orphaned: bool,
    events: Sequence[Event],
    surface_status: str | None,
    surface_wait_reason: str | None,
) -> str | None:
    """§3 failure_reason: null for succeeded/in_progress, else the first that applies."""
    if status in ("succeeded", "in_progress"):
        return None
    if terminal is not None and event_reason(terminal) is not None:
        return event_reason(terminal)
    if orphaned:
        return "orphaned_started_run"
    first = first_failure_reason(events)
    if first is not None:
        return first
    if status == "surface_failed":
        return surface_wait_reason or surface_status or "browser_surface_failed"
    return None


def known_gaps(terminal: Event | None) -> Json:
    """§3: the winning terminal event's data.known_gaps when it is an array, else []."""
    value = json_path(terminal.data, "known_gaps") if terminal else None
    is_array = isinstance(value, list) or (isinstance(value, Deep) and value.depth >= 1)
    # README: and only when every client can parse it.
    return served(value) if is_array and servable(value) else []


def collection_facts(terminal: Event | None) -> Json:
    """§3: the winning terminal event's data.collection_facts when it is an object (README: that
    every client can parse), else null."""
    value = json_path(terminal.data, "collection_facts") if terminal else None
    return served(value) if isinstance(value, dict) and servable(value) else None


def records_emitted(terminal: Event | None) -> int | None:
    """§3 / README: data.records_emitted of the winning terminal event, only as a whole number
    between 0 and 9e18."""
    value = json_path(terminal.data, "records_emitted") if terminal else None
    if not is_json_number(value):
        return None
    exact = exact_number(value)
    if 0 <= exact <= RECORDS_EMITTED_LIMIT and exact == exact.to_integral_value():
        return int(exact)
    return None


@dataclass(frozen=True)
class Run:
    """One run summary (§3)."""

    connector_id: str
    run_id: str
    identity: str | None
    status: str
    started_at: datetime
    last_at: datetime
    finished_at: datetime | None
    failure_reason: str | None
    event_count: int
    last_event_seq: int
    browser_surface_profile_key: str | None
    browser_surface_status: str | None
    browser_surface_wait_reason: str | None
    known_gaps: Json
    collection_facts: Json
    records_emitted: int | None

    def recency(self) -> tuple[datetime, int]:
        """§3 "latest": greatest last_at, ties broken by greatest event_seq."""
        return (self.last_at, self.last_event_seq)


def summarise_run(key: RunKey, events: Sequence[Event], active_runs: Iterable[ActiveRun]) -> Run:
    """§3 run summary fields of one run (events in event_seq order)."""
    terminal = winning_terminal(events)
    running = controller_runs_it(key, active_runs)
    status = run_status(events, terminal, running)
    surface = newest_surface_event(events)
    surface_data = json_path(surface.data, "browser_surface") if surface else None
    surface_status = json_text(surface_data, "browser_surface_status")
    surface_wait_reason = json_text(surface_data, "browser_surface_wait_reason")
    last_at = max(e.occurred_at for e in events)
    return Run(
        connector_id=key[0],
        run_id=key[1],
        identity=key[2],
        status=status,
        started_at=min(e.occurred_at for e in events),
        last_at=last_at,
        finished_at=None if status == "in_progress" else last_at,
        failure_reason=failure_reason(
            status,
            terminal,
            is_orphaned(events, terminal, running),
            events,
            surface_status,
            surface_wait_reason,
        ),
        event_count=len(events),
        last_event_seq=max(e.event_seq for e in events),
        browser_surface_profile_key=json_text(surface_data, "browser_surface_profile_key"),
        browser_surface_status=surface_status,
        browser_surface_wait_reason=surface_wait_reason,
        known_gaps=known_gaps(terminal),
        collection_facts=collection_facts(terminal),
        records_emitted=records_emitted(terminal),
    )


def run_summary_json(run: Run) -> dict[str, Json]:
    """A refproj.run_summaries row through to_jsonb."""
    return {
        "connector_id": run.connector_id,
        "run_id": run.run_id,
        "connector_instance_id": run.identity,
        "status": run.status,
        "started_at": iso(run.started_at),
        "last_at": iso(run.last_at),
        "finished_at": iso(run.finished_at),
        "failure_reason": run.failure_reason,
        "event_count": run.event_count,
        "last_event_seq": run.last_event_seq,
        "browser_surface_profile_key": run.browser_surface_profile_key,
        "browser_surface_status": run.browser_surface_status,
        "browser_surface_wait_reason": run.browser_surface_wait_reason,
        "known_gaps": run.known_gaps,
        "collection_facts": run.collection_facts,
        "records_emitted": run.records_emitted,
    }


def run_brief_json(run: Run | None) -> dict[str, Json] | None:
    """§5 the last_run / last_successful_run object."""
    if run is None:
        return None
    return {
        "run_id": run.run_id,
        "status": run.status,
        "started_at": iso(run.started_at),
        "last_at": iso(run.last_at),
        "finished_at": iso(run.finished_at),
        "failure_reason": run.failure_reason,
        "event_count": run.event_count,
        "browser_surface_profile_key": run.browser_surface_profile_key,
    }


def recent_run_json(run: Run) -> dict[str, Json]:
    """§6 a recent_runs entry: the brief plus the rest of the run summary."""
    brief = run_brief_json(run)
    assert brief is not None
    return brief | {
        "connector_instance_id": run.identity,
        "browser_surface_status": run.browser_surface_status,
        "browser_surface_wait_reason": run.browser_surface_wait_reason,
        "known_gaps": run.known_gaps,
        "collection_facts": run.collection_facts,
        "records_emitted": run.records_emitted,
    }


# ---------------------------------------------------------------------------------------------
# §4 Which runs belong to which connection
# ---------------------------------------------------------------------------------------------


def profile_key_base(connector: Connector) -> str:
    """§4: the manifest's capabilities.browser_surface.profile_key, trimmed, if non-empty; else
    the connector id."""
    value = json_path(connector.manifest, "capabilities", "browser_surface", "profile_key")
    if isinstance(value, str) and value.strip(WHITESPACE):
        return value.strip(WHITESPACE)
    return connector.connector_id


def expected_profile_key(connector: Connector, connection: Connection) -> str:
    """§4: the base alone when connector_instance_id = connector_id, else base:instance id."""
    base = profile_key_base(connector)
    if connection.connector_instance_id == connection.connector_id:
        return base
    return f"{base}:{connection.connector_instance_id}"


def is_sole_active(connection: Connection, siblings: Sequence[Connection]) -> bool:
    """§4 rule 3: the connection is active and the only active connection of its connector."""
    active = [c for c in siblings if c.status == "active"]
    return connection.status == "active" and len(active) == 1


def run_matches(
    run: Run, connection: Connection, connector: Connector, siblings: Sequence[Connection]
) -> bool:
    """§4 rules 1-3 (siblings: every connection of the connector, the connection included)."""
    if run.connector_id != connection.connector_id:
        return False  # never a connection of another connector
    if run.browser_surface_profile_key is not None:
        return run.browser_surface_profile_key == expected_profile_key(connector, connection)
    if run.identity is not None:
        return run.identity == connection.connector_instance_id
    return is_sole_active(connection, siblings)


def latest(runs: Iterable[Run]) -> Run | None:
    """§3 "latest": greatest last_at, ties broken by greatest event_seq."""
    return max(runs, key=Run.recency, default=None)


@dataclass(frozen=True)
class RunEvidence:
    """§4 per connection: last_run, last_successful_run, failures_since_last_success."""

    last_run: Run | None
    last_successful_run: Run | None
    failures_since_last_success: int


def run_evidence(matching: Sequence[Run]) -> RunEvidence:
    """§4: latest matching run, latest succeeded one, and counted failures after that success
    (all of them when there is no success)."""
    success = latest(r for r in matching if r.status == "succeeded")
    failures = [
        r
        for r in matching
        if r.status in COUNTED_FAILURES and (success is None or r.last_at > success.last_at)
    ]
    return RunEvidence(latest(matching), success, len(failures))


# ---------------------------------------------------------------------------------------------
# §5 The connection summary row
# ---------------------------------------------------------------------------------------------


def is_visible(connection: Connection) -> bool:
    """§5: everything but revoked retired setup attempts."""
    kind = json_path(connection.source_binding, "kind")
    return not (connection.status == "revoked" and isinstance(kind, str) and kind in RETIRED_SETUP_KINDS)


def display_name(connection: Connection, connector: Connector) -> str:
    """§5: instance name, else connector display name, else connector id (README: empty names
    fall through)."""
    return connection.display_name or connector.display_name or connector.connector_id


def connector_display_name(connector: Connector) -> str:
    """§5: connector display name, else connector id."""
    return connector.display_name or connector.connector_id


def manifest_streams(connector: Connector) -> list[str]:
    """§2/§5: manifest streams, names or objects with a name (README: non-empty strings)."""
    streams = json_path(connector.manifest, "streams")
    if not isinstance(streams, list):
        return []
    names = []
    for item in streams:
        name = item if isinstance(item, str) else json_text(item, "name")
        if isinstance(name, str) and name:
            names.append(name)
    return names


def max_staleness(connector: Connector) -> timedelta:
    """§5: refresh_policy.max_staleness_seconds, 24 hours when absent (README: only numbers
    between 0 and 100 years count). PostgreSQL's make_interval rounds secs * 1e6 as a double."""
    value = json_path(connector.manifest, "refresh_policy", "max_staleness_seconds")
    if is_json_number(value) and 0 <= exact_number(value) <= MAX_STALENESS_LIMIT_SECONDS:
        return timedelta(microseconds=round(float(value) * 1_000_000))
    return DEFAULT_MAX_STALENESS


def retained_bytes(row: RetainedConnection | None) -> dict[str, int | None] | None:
    """§5: the retained_size_connection object, or null when there is no row."""
    if row is None:
        return None
    return {
        "record_json_bytes": row.current_record_json_bytes,
        "record_changes_json_bytes": row.record_history_json_bytes,
        "blob_bytes": row.blob_bytes,
        "total_bytes": total_bytes(row),
    }


def total_bytes(row: RetainedConnection | None) -> int | None:
    """0 without a row; README: null when the sum leaves the bigint range."""
    if row is None:
        return 0
    return int64_or_none(row.current_record_json_bytes + row.record_history_json_bytes + row.blob_bytes)


def freshness_at(evidence: RunEvidence, staleness: timedelta, at: datetime) -> dict[str, Json]:
    """§5 freshness at read time (README: it also carries max_staleness_seconds). The boundary
    (read time - captured_at = max_staleness) is current, as in the SQL; the spec is silent."""
    last, success = evidence.last_run, evidence.last_successful_run
    if (
        last is not None
        and last.status in FAILED_LIKE
        and (success is None or last.last_at >= success.last_at)
    ):
        status = "stale"
    elif success is not None:
        status = "current" if at - success.last_at <= staleness else "stale"
    else:
        status = "unknown"
    return {
        "status": status,
        "captured_at": iso(success.last_at) if success else None,
        "last_attempted_at": iso(last.last_at) if last else None,
        "max_staleness_seconds": interval_seconds(staleness),
    }


def health_at(connection_status: str, last_run: Run | None, freshness: dict[str, Json]) -> dict[str, Json]:
    """§5 health, first rule that applies (README: the reasons)."""
    if connection_status == "revoked":
        return {"state": "revoked", "reason": "connection_revoked"}
    if connection_status == "paused":
        return {"state": "paused", "reason": "connection_paused"}
    if connection_status == "draft":
        return {"state": "setup", "reason": "connection_draft"}
    if last_run is not None and last_run.status == "in_progress":
        return {"state": "running", "reason": "run_in_progress"}
    if last_run is None:
        return {"state": "idle", "reason": "never_run"}
    if last_run.status in FAILED_LIKE:
        return {"state": "failing", "reason": last_run.failure_reason or last_run.status}
    if freshness["status"] == "stale":
        return {"state": "stale", "reason": "past_max_staleness"}
    if freshness["status"] == "current":
        return {"state": "healthy", "reason": None}
    return {"state": "unknown", "reason": "no_successful_run"}


# ---------------------------------------------------------------------------------------------
# The model: everything above applied to one set of source rows
# ---------------------------------------------------------------------------------------------


class Oracle:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.connectors = {c.connector_id: c for c in sources.connectors}
        self.runs = [
            summarise_run(key, events, sources.active_runs)
            for key, events in group_runs(sources.events).items()
        ]

    # -- §3 / §4 ----------------------------------------------------------------------------------

    def run_summaries(self) -> list[dict[str, Json]]:
        """Every run summary, sorted by (connector_id, run_id, identity with None first)."""
        return sorted((run_summary_json(r) for r in self.runs), key=run_sort_key)

    def connections_of(self, connector_id: str) -> list[Connection]:
        """Every connection of a connector, retired setup attempts included (they still claim
        their own runs)."""
        return [c for c in self.sources.connections if c.connector_id == connector_id]

    def matching_runs(self, connection: Connection) -> list[Run]:
        connector = self.connectors[connection.connector_id]
        siblings = self.connections_of(connection.connector_id)
        return [r for r in self.runs if run_matches(r, connection, connector, siblings)]

    def unattributed_runs(self, connector_id: str) -> int:
        """§4/§6: the connector's runs that match no connection."""
        connector = self.connectors[connector_id]
        siblings = self.connections_of(connector_id)
        return sum(
            1
            for r in self.runs
            if r.connector_id == connector_id
            and not any(run_matches(r, c, connector, siblings) for c in siblings)
        )

    # -- §5 / §6 ----------------------------------------------------------------------------------

    def visible_connections(self) -> list[Connection]:
        """§5 visible connections in §6 overview order (connector_id, created_at, id)."""
        visible = [c for c in self.sources.connections if is_visible(c)]
        return sorted(visible, key=lambda c: (c.connector_id, c.created_at, c.connector_instance_id))

    def row(self, connection: Connection, at: datetime) -> dict[str, Json]:
        """§5 the summary row: stored evidence plus freshness and health at ``at``."""
        connector = self.connectors[connection.connector_id]
        cid = connection.connector_instance_id
        streams = [s for s in self.sources.retained_streams if s.connector_instance_id == cid]
        retained = next(
            (r for r in self.sources.retained_connections if r.connector_instance_id == cid), None
        )
        evidence = run_evidence(self.matching_runs(connection))
        staleness = max_staleness(connector)
        freshness = freshness_at(evidence, staleness, at)
        return {
            "connector_instance_id": cid,
            "connection_id": cid,
            "connector_id": connection.connector_id,
            "display_name": display_name(connection, connector),
            "connector_display_name": connector_display_name(connector),
            "status": connection.status,
            "source_kind": connection.source_kind,
            "created_at": iso(connection.created_at),
            "revoked_at": iso(connection.revoked_at),
            "streams": manifest_streams(connector),
            "stream_count": len(streams),
            "total_records": int64_or_none(sum(s.record_count for s in streams)),
            "retained_bytes": retained_bytes(retained),
            "total_retained_bytes": total_bytes(retained),
            "last_run": run_brief_json(evidence.last_run),
            "last_successful_run": run_brief_json(evidence.last_successful_run),
            "failures_since_last_success": evidence.failures_since_last_success,
            "max_staleness": interval_seconds(staleness),
            "freshness": freshness,
            "health": health_at(connection.status, evidence.last_run, freshness),
        }

    def overview(self, at: datetime, connector_id: str | None = None) -> list[dict[str, Json]]:
        """§6 overview: every visible connection in order, optionally of one connector."""
        return [
            self.row(c, at)
            for c in self.visible_connections()
            if connector_id is None or c.connector_id == connector_id
        ]

    def resolve(self, requested: str) -> dict[str, Json]:
        """§6 resolution: an exact visible connection id; else a connector id with exactly one
        visible connection; else nothing (ambiguous or not found), as resolve_connection says."""
        visible = self.visible_connections()
        exact = [c for c in visible if c.connector_instance_id == requested]
        if exact:
            return {
                "connector_instance_id": requested,
                "connector_id": exact[0].connector_id,
                "resolution": "exact",
                "candidates": 1,
                "candidate_ids": [requested],
            }
        # Candidates in overview order (visible_connections() is sorted by it).
        candidates = [c.connector_instance_id for c in visible if c.connector_id == requested]
        return {
            "connector_instance_id": candidates[0] if len(candidates) == 1 else None,
            "connector_id": requested if candidates else None,
            "resolution": {0: "not_found", 1: "connector"}.get(len(candidates), "ambiguous"),
            "candidates": len(candidates),
            "candidate_ids": candidates,
        }

    def detail(self, requested: str, run_limit: int, at: datetime) -> dict[str, Json] | None:
        """§6 detail: the row plus recent_runs, streams_retained and unattributed_runs; None when
        the id resolves to nothing."""
        resolved = self.resolve(requested)["connector_instance_id"]
        if resolved is None:
            return None
        connection = next(c for c in self.sources.connections if c.connector_instance_id == resolved)
        recent = sorted(self.matching_runs(connection), key=Run.recency, reverse=True)[: max(run_limit, 0)]
        streams = sorted(
            (s for s in self.sources.retained_streams if s.connector_instance_id == resolved),
            key=lambda s: s.stream,
        )
        return self.row(connection, at) | {
            "recent_runs": [recent_run_json(r) for r in recent],
            "streams_retained": [
                {
                    "stream": s.stream,
                    "record_count": s.record_count,
                    "current_record_json_bytes": s.current_record_json_bytes,
                    "record_history_json_bytes": s.record_history_json_bytes,
                    "blob_bytes": s.blob_bytes,
                    "computed_at": iso(s.computed_at),
                }
                for s in streams
            ],
            "unattributed_runs": self.unattributed_runs(connection.connector_id),
        }


def run_sort_key(run: dict[str, Json]) -> tuple[str, str, bool, str]:
    """A total order of run summary JSON rows (identity None first)."""
    identity = run["connector_instance_id"]
    return (run["connector_id"], run["run_id"], identity is not None, identity or "")

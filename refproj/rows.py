"""Typed answers: the shapes ``list()``, ``get()``, ``status()`` and ``refresh()`` return.

The row shapes are ``TypedDict``s (the rows stay plain JSON-ready dicts at run time) and
``json_schemas()`` derives a JSON Schema of each from these same definitions, via pydantic, so
the documentation of a shape and the shape cannot drift apart.

Overview answers are shared between concurrent callers (single flight, reuse window), so their
rows are frozen: ``FrozenDict`` and ``FrozenList`` are ``dict`` and ``list`` (``json.dumps`` and
``==`` work as usual) whose mutating methods raise ``TypeError``. A caller that wants to edit
takes a copy (``copy.deepcopy(rows)`` or ``thaw(rows)``). Detail answers are built per call and
are plain dicts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from types import NoneType, UnionType
from typing import Any, Literal, NoReturn, Union, cast, get_args, get_origin

import orjson
from typing_extensions import TypedDict, get_type_hints, is_typeddict  # pydantic needs them on Python < 3.12

from refproj.errors import DatabaseError


class RunBrief(TypedDict):
    """A run as the overview shows it (``last_run``, ``last_successful_run``)."""

    run_id: str
    status: str  # in_progress, succeeded, failed, surface_failed, cancelled, abandoned, ...
    # ISO-8601 in UTC (datetime.fromisoformat reads it); None also when no ISO-8601 parser could
    # read the value (a year before 1 or after 9999, infinity)
    started_at: str | None
    last_at: str | None
    finished_at: str | None
    failure_reason: str | None
    event_count: int
    browser_surface_profile_key: str | None


class Freshness(TypedDict):
    """How current the connection's data is at the read time (never stored)."""

    status: Literal["current", "stale", "unknown"]
    captured_at: str | None  # last_successful_run.last_at
    last_attempted_at: str | None  # last_run.last_at
    max_staleness_seconds: float


class Health(TypedDict):
    """The first rule of DOMAIN.md section 5 that applies, at the read time (never stored)."""

    state: Literal["revoked", "paused", "setup", "running", "idle", "failing", "stale", "healthy", "unknown"]
    reason: str | None


class RetainedBytes(TypedDict):
    """Bytes the connection's data occupies (from ``retained_size_connection``)."""

    record_json_bytes: int
    record_changes_json_bytes: int
    blob_bytes: int
    total_bytes: int | None  # None: the sum does not fit in a bigint


class OverviewRow(TypedDict):
    """One connection in the overview (``list()``), in overview order."""

    connector_instance_id: str
    connection_id: str  # same value as connector_instance_id
    connector_id: str
    display_name: str
    connector_display_name: str
    status: Literal["active", "paused", "revoked", "draft"]
    source_kind: Literal["account", "local_device", "browser_collector", "manual"]
    created_at: str | None  # ISO-8601 in UTC; None when no ISO-8601 parser could read it
    revoked_at: str | None
    streams: list[str]
    stream_count: int
    total_records: int | None  # None: the sum does not fit in a bigint
    retained_bytes: RetainedBytes | None
    total_retained_bytes: int | None  # 0 without a retained_size_connection row; None: too large
    last_run: RunBrief | None
    last_successful_run: RunBrief | None
    failures_since_last_success: int
    max_staleness: float  # seconds, e.g. 86400.0
    freshness: Freshness
    health: Health


class RunDetail(TypedDict):
    """A run in the detail's ``recent_runs``: the full run summary."""

    run_id: str
    connector_instance_id: str | None
    status: str
    started_at: str | None
    last_at: str | None
    finished_at: str | None
    failure_reason: str | None
    event_count: int
    records_emitted: int | None
    known_gaps: list[Any]
    collection_facts: Any
    browser_surface_status: str | None
    browser_surface_profile_key: str | None
    browser_surface_wait_reason: str | None


class StreamRetained(TypedDict):
    """One stream's retained size (from ``retained_size_stream``)."""

    stream: str
    record_count: int
    current_record_json_bytes: int
    record_history_json_bytes: int
    blob_bytes: int
    computed_at: str | None


class Detail(OverviewRow):
    """The live detail of one connection (``get()``): every overview field plus these."""

    recent_runs: list[RunDetail]
    streams_retained: list[StreamRetained]
    unattributed_runs: int


# -- frozen containers ------------------------------------------------------------------------------


def _read_only(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is shared between callers and read-only; edit a copy")


class FrozenDict(dict[str, Any]):
    """A ``dict`` whose mutating methods raise ``TypeError`` (``copy.copy`` gives a plain dict)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A ``list`` whose mutating methods raise ``TypeError`` (``copy.copy`` gives a plain list)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = clear = extend = insert = pop = remove = reverse = sort = _read_only

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (list, (list(self),))


def freeze(value: Any) -> Any:
    """Parsed JSON with every object and array replaced by its frozen twin (whatever its shape).

    Written for speed: no call for scalars, exact type tests. Overview rows take the quicker
    path their type allows (``_freezer``).
    """
    kind = type(value)
    if kind is dict:
        return FrozenDict(
            {key: freeze(item) if type(item) in _CONTAINERS else item for key, item in value.items()}
        )
    if kind is list:
        return FrozenList([freeze(item) if type(item) in _CONTAINERS else item for item in value])
    return value


def _freezer(hint: Any) -> Callable[[Any], Any] | None:
    """How to freeze a freshly parsed JSON value of type ``hint`` (a row ``TypedDict`` or one of
    its fields' types), in place: None for a scalar (nothing to do); for a ``TypedDict`` object,
    freeze only the fields whose type holds objects or arrays, then wrap the object; for a list,
    wrap it (and its items when they are containers). ``Any`` and unions of several types take
    ``freeze()``, as does a value that is not of its type (None of an optional field).

    Visiting only the container fields a type names, instead of every value, makes freezing 968
    overview rows about 3 times cheaper (3.0 ms instead of 8.4 ms at profile M): most of a row is
    scalars. A strict test validates the served rows against these types
    (tests/test_async.py::test_rows_match_their_typed_definitions_and_json_schemas).
    """
    if get_origin(hint) in (Union, UnionType):
        members = [member for member in get_args(hint) if member is not NoneType]
        if len(members) != 1:
            return freeze
        hint = members[0]
    if hint in (str, int, float, bool) or get_origin(hint) is Literal:
        return None
    if is_typeddict(hint):
        typed = get_type_hints(hint).items()
        fields = [(name, f) for name, field in typed if (f := _freezer(field)) is not None]

        def freeze_object(value: Any) -> Any:
            if type(value) is not dict:
                return freeze(value)
            for name, freeze_field in fields:
                if name in value:
                    value[name] = freeze_field(value[name])
            return FrozenDict(value)

        return freeze_object
    if get_origin(hint) is list:
        freeze_item = _freezer(get_args(hint)[0])

        def freeze_array(value: Any) -> Any:
            if type(value) is not list:
                return freeze(value)
            return FrozenList(value if freeze_item is None else [freeze_item(item) for item in value])

        return freeze_array
    return freeze


_CONTAINERS = (dict, list)
_freeze_overview_row = cast(Callable[[Any], Any], _freezer(OverviewRow))


def thaw(value: Any) -> Any:
    """A deep, mutable copy of frozen (or plain) JSON data."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value


# -- answers --------------------------------------------------------------------------------------------


class Overview(FrozenList):
    """The overview rows (``OverviewRow``s, in overview order) plus how current they are.

    A read-only list: ``json.dumps(overview)`` gives the rows. ``as_of`` is when the stored
    evidence was computed, ``source_changed`` whether a source table was written since, and
    ``json_text`` the rows exactly as the database serialised them (a JSON array, str), for
    writing a response body without parsing and serialising again. ``building`` is True while
    the first build after install has not committed: the list is then empty because nothing is
    stored yet, not because there are no connections. Shared between concurrent callers, hence
    read-only (rows and nested values included).
    """

    __slots__ = ("as_of", "building", "json_text", "source_changed")
    as_of: datetime
    source_changed: bool
    json_text: str
    building: bool

    def __init__(self, json_text: str, as_of: datetime, source_changed: bool, building: bool = False) -> None:
        try:
            rows = orjson.loads(json_text)
        except orjson.JSONDecodeError as error:  # the SQL caps depth and numbers; say so if it did not
            raise DatabaseError(f"the database answered JSON refproj cannot parse: {error}") from error
        list.__init__(self, [_freeze_overview_row(row) for row in rows])
        self.json_text = json_text
        self.as_of = as_of
        self.source_changed = source_changed
        self.building = building

    def envelope(self) -> dict[str, Any]:
        """``{"as_of", "source_changed", "building", "connections"}``, JSON-ready."""
        return {
            "as_of": self.as_of.isoformat(),
            "source_changed": self.source_changed,
            "building": self.building,
            "connections": list(self),
        }

    def __reduce__(self) -> Any:
        return (Overview, (self.json_text, self.as_of, self.source_changed, self.building))


class OverviewJson:
    """The overview as the database serialised it, not parsed (``list_json()``).

    ``json_text`` is the JSON array of ``OverviewRow``s (str), ``as_of`` and ``source_changed``
    say how current it is, ``building`` that the first build after install has not committed
    (``json_text`` is then ``[]``: nothing is stored yet). ``overview()`` parses it into the
    read-only ``Overview`` once; every caller sharing this answer gets that same ``Overview``. A
    server writing response bodies uses ``json_text`` and never pays for the parse.
    """

    __slots__ = ("_lock", "_overview", "as_of", "building", "json_text", "source_changed")

    def __init__(self, json_text: str, as_of: datetime, source_changed: bool, building: bool = False) -> None:
        self.json_text = json_text
        self.as_of = as_of
        self.source_changed = source_changed
        self.building = building
        self._overview: Overview | None = None
        self._lock = threading.Lock()

    @property
    def parsed(self) -> bool:
        """Whether ``overview()`` has already been computed (it is then free)."""
        return self._overview is not None

    def overview(self) -> Overview:
        """The parsed, read-only rows; computed once per answer. Raises ``DatabaseError`` when
        the text is not JSON refproj can parse."""
        if self._overview is None:
            with self._lock:
                if self._overview is None:
                    self._overview = Overview(self.json_text, self.as_of, self.source_changed, self.building)
        return self._overview


@dataclass(frozen=True)
class Status:
    """How current the stored overview is (``status()``)."""

    as_of: datetime  # when the current evidence was computed
    source_changed: bool  # a source table was written since
    last_refresh_ms: float | None
    refresh_count: int
    building: bool = False  # the first build after install has not committed yet

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat()
        return out


@dataclass(frozen=True)
class RefreshResult:
    """What ``refresh()`` waited for."""

    refreshed: bool  # whether this call's SQL ran the refresh (False: it shared another's)
    as_of: datetime  # when the refresh that satisfied this call took its snapshot
    refresh_ms: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat()
        return out


ROW_TYPES: dict[str, Any] = {
    "OverviewRow": OverviewRow,
    "Detail": Detail,
    "RunBrief": RunBrief,
    "RunDetail": RunDetail,
    "Freshness": Freshness,
    "Health": Health,
    "RetainedBytes": RetainedBytes,
    "StreamRetained": StreamRetained,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """{name: JSON Schema (draft 2020-12)} of every row type, generated from the TypedDicts, and of
    ``Status`` and ``RefreshResult`` (their ``to_dict()``).

    Needs pydantic (installed with refproj's ``web`` or ``dev`` extra), imported only here.
    """
    from pydantic import TypeAdapter

    # Status and RefreshResult are dataclasses: their schema is that of to_dict() (as_of text).
    schemas = {name: TypeAdapter(kind).json_schema() for name, kind in ROW_TYPES.items()}
    for name, kind in (("Status", Status), ("RefreshResult", RefreshResult)):
        schemas[name] = TypeAdapter(kind).json_schema(mode="serialization")
    return schemas

"""Schemathesis against /openapi.json of a real server on a seeded test database: every
documented response matches its schema, invalid input is rejected with a documented 4xx, and
nothing answers 500. Kept short (a few dozen generated requests per operation)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import psycopg
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refproj.paging import encode_cursor
from tests.web_server import running_server
from tests.world import World

# The after= cursor's format (OpenAPI: refproj-cursor): cursors as the service issues them, so
# that positive data is always accepted, and whatever else as negative data.
_ID = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20
)
_WHEN = st.datetimes(timezones=st.just(UTC)).map(lambda when: when.isoformat())
schemathesis.openapi.format(
    "refproj-cursor", st.tuples(_ID, _WHEN, _ID).map(lambda key: encode_cursor(list(key)))
)


def test_every_documented_response_matches_its_schema(db: psycopg.Connection[Any], db_url: str) -> None:
    world = World(db)
    world.siblings()
    world.connector("solo")
    world.connection("solo_one", "solo")
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    world.failed_run("run_bad", "solo_one", "11:00", "11:05", "auth", connector="solo")
    world.refresh()
    with running_server(db_url) as (base, _):
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        # The event stream never ends; its behaviour is tested in tests/test_web.py.
        tested = [op for op in operations if op.definition.raw.get("operationId") != "events"]
        assert [op.label for op in operations if op not in tested] == ["GET /_ref/connectors/events"]
        # (Schemathesis leaves out the operation serving the schema itself.)
        assert len(tested) == 6, [op.label for op in tested]
        for operation in tested:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=30,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            def check(case: Any) -> None:
                case.call_and_validate()

            check()

"""PostgreSQL: a month the operator archived (detached for archiving,
listed in ``archived_months``) takes no reading again, and Python sees a
ConflictError naming the month."""

import datetime as dt
import os
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

import microgrid

UTC = dt.timezone.utc


def _schema_url():
    url = os.environ.get("MICROGRID_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/test-all (it starts the servers)")
    schema = f"py_{uuid.uuid4().hex[:12]}"
    joint = "&" if "?" in url else "?"
    return url, schema, f"{url}{joint}schema={schema}"


def _archive(server_url, schema, month):
    """Lists `month` in the schema's archived_months, as detach_month does
    after detaching its partitions (this month has none)."""
    import psycopg

    parts = urlsplit(server_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    with psycopg.connect(urlunsplit(parts._replace(query=urlencode(query))), autocommit=True) as con:
        con.execute(
            f'INSERT INTO "{schema}".archived_months (month, tables) VALUES (%s, %s)',
            (month, []),
        )


def test_a_reading_in_an_archived_month_is_a_conflict_naming_the_month():
    server, schema, url = _schema_url()
    grid = microgrid.Grid(url)
    grid.register("a", "A", microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1))
    march = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert grid.record([march], ["a"], [100], [50])["inserted"] == 1
    _archive(server, schema, dt.datetime(2026, 4, 1, tzinfo=UTC))

    april = dt.datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
    with pytest.raises(microgrid.ConflictError) as raised:
        grid.record([april], ["a"], [100], [50])
    assert raised.value.kind == "month_archived"
    assert raised.value.details["month"] == "2026-04"
    # March is untouched and May still takes readings.
    assert grid.record([march], ["a"], [100], [50])["unchanged"] == 1
    assert grid.record([april + dt.timedelta(days=30)], ["a"], [100], [50])["inserted"] == 1

import datetime as dt
import os
import uuid

import pytest

UTC = dt.timezone.utc
JUNE = dt.datetime(2026, 6, 1, tzinfo=UTC)


def _required(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        # Database tests never skip: without the server the run fails.
        pytest.fail(f"{name} is not set: run ./scripts/test-all (it starts the servers)")
    return url


@pytest.fixture(params=["memory", "sqlite", "postgres", "mongodb"])
def store_url(request, tmp_path):
    kind = request.param
    if kind == "memory":
        return "memory:"
    if kind == "sqlite":
        return f"sqlite:{tmp_path / 'books.db'}"
    if kind == "postgres":
        # A schema of its own for each test (the store's `schema` parameter).
        url = _required("MICROGRID_TEST_POSTGRES_URL")
        joint = "&" if "?" in url else "?"
        return f"{url}{joint}schema=py_{uuid.uuid4().hex[:12]}"
    url = _required("MICROGRID_TEST_MONGODB_URL")
    # A database of its own for each test.
    return url.replace("/?", f"/py_{uuid.uuid4().hex[:12]}?", 1)

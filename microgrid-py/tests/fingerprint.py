"""Fingerprints of a store, to show that a refused input changed nothing.

Two views, compared before and after the input:

* ``tables(url)``: every table or collection as the database holds it,
  read past the library. SQLite through the stdlib ``sqlite3`` (every table
  in ``sqlite_master``, migrations bookkeeping included); PostgreSQL through
  ``psycopg`` (every base table of the schema the URL's ``schema``
  parameter names, ``public`` without one, ``_sqlx_migrations`` included;
  sequences are not tables and are not compared: PostgreSQL does not roll a
  sequence back with the transaction that advanced it); MongoDB through
  ``pymongo`` (every collection of the URL's database). Rows are rendered
  as text, sorted and hashed per table; the rows are kept so that a
  difference can be shown. The memory store has no view of its own:
  ``tables("memory:")`` is empty, and the API view below is all there is.
* ``api(grid, ...)``: what the public API shows: ``prosumers()``,
  ``summaries``, ``trades`` and ``allocations_arrow`` over a window, a bill
  of the cleared part, and the given settlements looked up by id. It is
  taken on every store (it also catches a grid whose cached registry went
  astray while the tables stayed the same).

A fingerprint is a dict ``{part: Part}``; ``differences(before, after)``
lists the parts that differ, with rows gone and rows new.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class Part:
    digest: str
    rows: tuple

    @staticmethod
    def of(rows: Sequence[str]) -> "Part":
        ordered = tuple(sorted(rows))
        h = hashlib.sha256()
        for r in ordered:
            h.update(r.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return Part(h.hexdigest(), ordered)


Fingerprint = Dict[str, Part]


def differences(before: Fingerprint, after: Fingerprint, show: int = 3) -> List[str]:
    """What differs, part by part, in words (empty: nothing)."""
    out = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b is None:
            out.append(f"{name}: appeared with {len(a.rows)} rows")
        elif a is None:
            out.append(f"{name}: disappeared ({len(b.rows)} rows)")
        elif a.digest != b.digest:
            gone = sorted(set(b.rows) - set(a.rows))
            new = sorted(set(a.rows) - set(b.rows))
            line = f"{name}: {len(b.rows)} -> {len(a.rows)} rows, {len(gone)} gone, {len(new)} new"
            for r in gone[:show]:
                line += f"\n    - {r[:300]}"
            for r in new[:show]:
                line += f"\n    + {r[:300]}"
            out.append(line)
    return out


# --- the database's own view -------------------------------------------------


def _sqlite(path: str) -> Fingerprint:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {}
        for name in names:
            cur = con.execute(f'SELECT * FROM "{name}"')
            cols = [d[0] for d in cur.description]
            out[f"sqlite:{name}"] = Part.of([repr(tuple(zip(cols, row))) for row in cur.fetchall()])
        return out
    finally:
        con.close()


_pg_connections: Dict[str, Any] = {}


def _postgres(url: str) -> Fingerprint:
    """Every base table of the store's schema: the URL's ``schema``
    parameter (which psycopg does not take), else ``public``."""
    import psycopg

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "public")
    server = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    con = _pg_connections.get(server)
    if con is None or con.closed:
        con = psycopg.connect(server, autocommit=True)
        _pg_connections[server] = con
    with con.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
            (schema,),
        )
        names = [n for (n,) in cur.fetchall()]
        assert names, f"no tables in schema {schema}"
        out = {}
        for name in names:
            cur.execute(f'SELECT * FROM "{schema}"."{name}"')
            cols = [d.name for d in cur.description]
            out[f"postgres:{name}"] = Part.of([repr(tuple(zip(cols, row))) for row in cur.fetchall()])
        return out


def _mongodb(url: str) -> Fingerprint:
    import pymongo
    from bson import json_util

    client = pymongo.MongoClient(url)
    try:
        db = client.get_default_database()
        out = {}
        for name in sorted(db.list_collection_names()):
            docs = sorted(db[name].find(), key=lambda d: json_util.dumps(d.get("_id"), sort_keys=True))
            out[f"mongodb:{name}"] = Part.of([json_util.dumps(d, sort_keys=True) for d in docs])
        return out
    finally:
        client.close()


def tables(url: str) -> Fingerprint:
    """Every table or collection of the store at ``url`` (``{}`` in memory)."""
    if url.startswith("memory:"):
        return {}
    if url.startswith("sqlite:"):
        return _sqlite(url[len("sqlite:") :].split("?", 1)[0])
    if url.startswith(("postgres://", "postgresql://")):
        return _postgres(url)
    if url.startswith("mongodb://"):
        assert urlsplit(url).path.strip("/"), "each MongoDB test has a database of its own"
        return _mongodb(url)
    raise ValueError(f"no fingerprint for {url}")


# --- the public API's view ---------------------------------------------------


def api(grid, start, end, *, bill: Optional[tuple] = None, tariff=None, settlement_ids: Sequence[str] = ()) -> Fingerprint:
    """The store as the public API shows it: the registry, the views of
    ``[start, end)``, the bill of ``bill`` (a ``(start, end)`` pair) at
    ``tariff``, and the settlements with ``settlement_ids``."""
    import pyarrow as pa

    def prosumers():
        return [repr(sorted(p.items())) for p in grid.prosumers()]

    def columns(view):
        names = sorted(view)
        return [repr(row) for row in zip(*(view[n] for n in names))] + [repr(names)]

    def one(f):
        try:
            return Part.of(f())
        except Exception as e:
            return Part.of([f"raised {type(e).__name__}: {e}"])

    out = {
        "api:prosumers": one(prosumers),
        "api:summaries": one(lambda: columns(grid.summaries(start, end))),
        "api:trades": one(lambda: columns(grid.trades(start, end))),
        "api:allocations": one(
            lambda: [repr(sorted(r.items())) for r in pa.table(grid.allocations_arrow(start, end)).to_pylist()]
        ),
    }
    if bill is not None:
        out["api:bill"] = one(lambda: [repr(sorted(b.items())) for b in grid.bill(bill[0], bill[1], tariff)])
    for sid in settlement_ids:

        def settlement(sid=sid):
            s = grid.settlement(sid)
            return ["None"] if s is None else [s.canonical_json(), repr(s.paid_txid), s.content_hash]

        out[f"api:settlement {sid[:12]}"] = one(settlement)
    return out

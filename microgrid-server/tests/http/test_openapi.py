"""The OpenAPI document at /openapi.json: valid OpenAPI 3.1 (checked by
openapi-spec-validator), and every operation it documents called with the
role it needs, each answer's status listed for the operation and its body
following the schema the document gives for that status (checked by
openapi-schema-validator's OAS31Validator, `$ref`s resolved in the
document)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid

import pyarrow as pa
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from openapi_check import Checker

UTC = dt.timezone.utc
# An amount-less regtest BOLT12 offer (made with the `lightning` crate's
# OfferBuilder from a fixed key; OFFER_A of microgrid-py/tests/test_lightning.py).
REGTEST_OFFER = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2z3cxz7t0w468xgr0vcsx6etdvfjhygpjxytzzq7hjd334aa2pecfgwwagl7qqxkdpvrjwectvecw5552eq7tqynlfg"
# A minimal mainnet offer (a test vector of the `lightning` crate).
MAINNET_OFFER = "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"


def test_the_document_is_valid_openapi_3_1(server):
    r = server.request("GET", "/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    validate(doc, cls=OpenAPIV31SpecValidator)
    # Every operation says who may call it and what it answers.
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            assert op.get("operationId"), f"{method} {path} has no operationId"
            assert op.get("responses"), f"{method} {path} documents no response"
            if path.startswith("/api/"):
                assert any(s.startswith("4") for s in op["responses"]), f"{method} {path} documents no 4xx"


def _bech32_regtest(seed: str) -> str:
    """A made-up regtest P2WPKH address (BIP 173) from a seed."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    program = hashlib.sha256(seed.encode()).digest()[:20]
    acc, bits, data = 0, 0, [0]
    for b in program:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hrp = "bcrt"

    def polymod(values):
        gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if (top >> i) & 1 else 0
        return chk

    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = polymod(expanded + data + [0] * 6) ^ 1
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(charset[d] for d in data + checksum)


def _z(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_documented_operation_answers_as_documented(server):
    doc = server.request("GET", "/openapi.json").json()
    check = Checker(doc)
    O, P, pid = server.operator_key, server.prosumer_key, server.prosumer_id

    def call(method, template, key, *, params=None, expect=None, path_args=None, **kw):
        path = template.format(**(path_args or {}))
        r = server.request(method, path, key, params=params, **kw)
        check.check(method, template, r)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r

    month_start = dt.datetime.fromisoformat(server.start).replace(tzinfo=UTC)
    month_end = dt.datetime.fromisoformat(server.end).replace(tzinfo=UTC)
    month = {"start": _z(month_start), "end": _z(month_end)}

    # Open to all.
    call("GET", "/healthz", None, expect=200)

    # Who am I.
    assert call("GET", "/api/v1/me", O, expect=200).json()["role"] == "operator"
    me = call("GET", "/api/v1/me", P, expect=200).json()
    assert me == {**me, "role": "prosumer", "prosumer": pid}
    call("GET", "/api/v1/me", None, expect=401)
    call("GET", "/api/v1/me", "wrong-" + "k" * 30, expect=401)

    # A member of its own, readings for it on the day after the month.
    new = f"http-{uuid.uuid4().hex[:8]}"
    day = month_end
    body = {"id": new, "name": "HTTP test house", "kind": "household", "joined": day.date().isoformat(), "address": _bech32_regtest(new)}
    assert call("POST", "/api/v1/prosumers", O, json=body).status_code in (200, 201)
    call("POST", "/api/v1/prosumers", O, json=body)  # again: a conflict, as documented
    call("POST", "/api/v1/prosumers", P, json={**body, "id": new + "-p"})
    ids = [p["id"] for p in call("GET", "/api/v1/prosumers", O, expect=200).json()["items"]]
    assert new in ids and pid in ids
    assert [p["id"] for p in call("GET", "/api/v1/prosumers", P, expect=200).json()["items"]] == [pid]
    # A member with a BOLT12 offer and no address (paid over Lightning
    # below); an offer for another network is refused, naming it.
    ln = new + "-ln"
    ln_body = {"id": ln, "name": "HTTP Lightning house", "kind": "household", "joined": day.date().isoformat(), "offer": REGTEST_OFFER}
    bad = call("POST", "/api/v1/prosumers", O, json={**ln_body, "offer": MAINNET_OFFER}, expect=422).json()
    assert bad["kind"] == "invalid_offer" and bad["details"]["offer"] == MAINNET_OFFER, bad
    assert call("POST", "/api/v1/prosumers", O, json=ln_body, expect=201).json()["offer"] == REGTEST_OFFER
    call("GET", "/api/v1/prosumers/{id}", O, path_args={"id": new}, expect=200)
    call("GET", "/api/v1/prosumers/{id}", P, path_args={"id": pid}, expect=200)
    other = call("GET", "/api/v1/prosumers/{id}", P, path_args={"id": new}, expect=404)
    unknown = call("GET", "/api/v1/prosumers/{id}", P, path_args={"id": "nobody-at-all"}, expect=404)
    # Another member's data is a 404 exactly like an unknown id's.
    assert other.text.replace(new, "X") == unknown.text.replace("nobody-at-all", "X")

    tf = dt.timedelta(minutes=15)
    rows = [
        {"prosumer": new, "start": _z(day + i * tf), "produced_wh": 100 + i, "consumed_wh": 50 + i} for i in range(4)
    ]
    report = call("POST", "/api/v1/readings", O, json=rows, expect=200).json()
    assert report["received"] == 4 and report["inserted"] == 4
    csv_text = "prosumer,start,produced_wh,consumed_wh\n" + "".join(
        f"{new},{_z(day + (4 + i) * tf)},{200 + i},{60 + i}\n" for i in range(4)
    )
    r = call("POST", "/api/v1/readings", O, data=csv_text, headers={"Content-Type": "text/csv"}, expect=200)
    assert r.json()["inserted"] == 4
    table = pa.table(
        {
            "prosumer": pa.array([new] * 4, pa.string()),
            "start": pa.array([day + (8 + i) * tf for i in range(4)], pa.timestamp("us", tz="UTC")),
            "produced_wh": pa.array([300 + i for i in range(4)], pa.int64()),
            "consumed_wh": pa.array([70 + i for i in range(4)], pa.int64()),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    r = call(
        "POST", "/api/v1/readings", O, data=sink.getvalue(),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"}, expect=200,
    )
    assert r.json()["inserted"] == 4
    bad = call("POST", "/api/v1/readings", O, data="prosumer,start,produced_wh,consumed_wh\n" + f"{new},{_z(day + 20 * tf)},lots,1\n", headers={"Content-Type": "text/csv"})
    assert bad.status_code in (400, 422) and "produced_wh" in bad.text
    call("POST", "/api/v1/readings", O, data="[{", headers={"Content-Type": "application/json"})
    call("POST", "/api/v1/readings", P, json=rows)
    call("POST", "/api/v1/readings", None, json=rows, expect=401)
    ln_rows = [{"prosumer": ln, "start": _z(day + i * tf), "produced_wh": 10_000, "consumed_wh": 0} for i in range(8)]
    assert call("POST", "/api/v1/readings", O, json=ln_rows, expect=200).json()["inserted"] == 8

    # Clear that day.
    clear = {"start": _z(day), "end": _z(day + dt.timedelta(days=1)), "mechanism": "sdr"}
    call("POST", "/api/v1/clear", O, json=clear, expect=200)
    call("POST", "/api/v1/clear", P, json=clear)
    call("POST", "/api/v1/clear", O, json={**clear, "mechanism": "nothing-like-it"})

    # The views, both roles, with pagination.
    page = call("GET", "/api/v1/grid", O, params={**month, "limit": 5}, expect=200).json()
    assert len(page["items"]) == 5 and page["next"]
    r = server.request("GET", page["next"], O)
    check.check("GET", "/api/v1/grid", r)
    assert r.status_code == 200 and r.json()["items"][0] != page["items"][0]
    call("GET", "/api/v1/grid", P, params={**month, "limit": 5}, expect=200)
    call("GET", "/api/v1/grid", O, params={**month, "limit": 0})
    days = call("GET", "/api/v1/grid/daily", O, params=month, expect=200).json()["items"]
    assert len(days) == (month_end - month_start).days
    call("GET", "/api/v1/grid/daily", P, params=month, expect=200)
    call("GET", "/api/v1/grid/daily", O, params={"start": "yesterday", "end": month["end"]})
    for template in ["/api/v1/prosumers/{id}/timeframes", "/api/v1/prosumers/{id}/daily"]:
        call("GET", template, O, path_args={"id": pid}, params={**month, "limit": 10}, expect=200)
        call("GET", template, P, path_args={"id": pid}, params={**month, "limit": 10}, expect=200)
        call("GET", template, P, path_args={"id": new}, params=month, expect=404)
    mine = call("GET", "/api/v1/prosumers/{id}/timeframes", O, path_args={"id": new}, params={"start": clear["start"], "end": clear["end"]}, expect=200).json()["items"]
    assert [(t["produced_wh"], t["consumed_wh"]) for t in mine][:4] == [(100, 50), (101, 51), (102, 52), (103, 53)]
    trades = call("GET", "/api/v1/trades", O, params={**month, "limit": 50}, expect=200).json()["items"]
    assert trades
    for t in call("GET", "/api/v1/trades", P, params={**month, "limit": 50}, expect=200).json()["items"]:
        assert pid in (t["seller"], t["buyer"])

    bills = call("GET", "/api/v1/bills", O, params=month, expect=200).json()
    assert len(bills["bills"]) >= 2
    assert [b["prosumer"] for b in call("GET", "/api/v1/bills", P, params=month, expect=200).json()["bills"]] == [pid]
    if "post" in doc["paths"].get("/api/v1/bills", {}):
        call("POST", "/api/v1/bills", O, json=month, expect=200)
        call("POST", "/api/v1/bills", P, json=month, expect=200)

    # Settle the month, read it back in every form, mark it paid.
    settle = {**month, "rate": "60000", "operator_address": _bech32_regtest("operator")}
    call("POST", "/api/v1/settlements", P, json=settle)
    s = call("POST", "/api/v1/settlements", O, json=settle).json()
    assert "id" in s, s
    sid = {"id": s["id"]}
    call("GET", "/api/v1/settlements/{id}", O, path_args=sid, expect=200)
    call("GET", "/api/v1/settlements/{id}", P, path_args=sid, expect=404)
    call("GET", "/api/v1/settlements/{id}", O, path_args={"id": "0" * 64}, expect=404)
    call("GET", "/api/v1/settlements/{id}/sendmany", O, path_args=sid, expect=200)
    call("GET", "/api/v1/settlements/{id}/psbt", O, path_args=sid, expect=200)
    call("GET", "/api/v1/settlements/{id}/invoices", O, path_args=sid, expect=200)
    call("GET", "/api/v1/settlements/{id}/invoices", P, path_args=sid, expect=200)
    call("POST", "/api/v1/settlements/{id}/paid", O, path_args=sid, json={"txid": "zz"})
    call("POST", "/api/v1/settlements/{id}/paid", O, path_args=sid, json={"txid": "ab" * 32}, expect=200)
    lightning = call("GET", "/api/v1/settlements/{id}/lightning", O, path_args=sid, expect=200).json()
    assert lightning == {"settlement": s["id"], "payouts": [], "total_msat": 0}
    call("GET", "/api/v1/settlements/{id}/lightning", P, path_args=sid, expect=404)
    call("GET", "/api/v1/settlements/{id}/lightning", O, path_args={"id": "0" * 64}, expect=404)

    # Settle the day after with a Lightning threshold: the member with only
    # an offer is paid over Lightning.
    day_settle = {**settle, "start": clear["start"], "end": clear["end"], "lightning_below_sats": 1000}
    call("POST", "/api/v1/settlements", O, json={**day_settle, "lightning_below_sats": -1}, expect=400)
    d = call("POST", "/api/v1/settlements", O, json=day_settle, expect=201).json()
    (entry,) = [e for e in d["entries"] if e["prosumer"] == ln]
    assert entry["action"] == "lightning" and entry["offer"] == REGTEST_OFFER and entry["sats"] > 0, entry
    assert d["lightning_sats"] == entry["sats"] and d["lightning_payouts"] == 1, d
    paid = call("GET", "/api/v1/settlements/{id}/lightning", O, path_args={"id": d["id"]}, expect=200).json()
    assert [(p["prosumer"], p["offer"], p["amount_msat"]) for p in paid["payouts"]] == [(ln, REGTEST_OFFER, entry["sats"] * 1000)]
    assert paid["total_msat"] == entry["sats"] * 1000

    # Keys: create one, list, use, revoke.
    k = call("POST", "/api/v1/keys", O, json={"role": "prosumer", "prosumer": pid}).json()
    assert k["secret"]
    listed = call("GET", "/api/v1/keys", O, expect=200).json()
    listed = listed["items"] if isinstance(listed, dict) else listed
    assert k["id"] in [x["id"] for x in listed] and all("secret" not in x for x in listed)
    call("GET", "/api/v1/keys", P)
    assert server.request("GET", "/api/v1/me", k["secret"]).status_code == 200
    call("DELETE", "/api/v1/keys/{id}", P, path_args={"id": k["id"]})
    assert call("DELETE", "/api/v1/keys/{id}", O, path_args={"id": k["id"]}).status_code in (200, 204)
    assert server.request("GET", "/api/v1/me", k["secret"]).status_code == 401
    call("DELETE", "/api/v1/keys/{id}", O, path_args={"id": k["id"]}, expect=404)
    call("POST", "/api/v1/keys", O, json={"role": "king"})

    missing = sorted(check.operations() - check.called)
    assert not missing, f"documented operations this test did not call: {missing}"

"""The page's files over plain HTTP: content types, cache headers, ETags,
no key needed, nothing loaded from another origin."""

from __future__ import annotations

import re

import requests


def test_the_page_is_served_without_a_key(server):
    r = server.request("GET", "/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert 'id="chart"' in r.text and 'id="bills"' in r.text
    # Every file the page loads comes from this server.
    links = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links), links


def test_every_linked_asset_has_its_type_and_is_cached_for_its_version(server):
    page = server.request("GET", "/").text
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    assets = re.findall(r'"(/assets/[^"?]+)\?v=([0-9a-f]+)"', page)
    assert {a for a, _ in assets} == {"/assets/app.js", "/assets/style.css", "/assets/favicon.svg"}
    for path, version in assets:
        r = server.request("GET", f"{path}?v={version}")
        assert r.status_code == 200
        assert r.headers["content-type"] == types[path[path.rindex("."):]]
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        # Without the current version the file is revalidated every time.
        assert server.request("GET", path).headers["cache-control"] == "no-cache"
        assert server.request("GET", f"{path}?v=0").headers["cache-control"] == "no-cache"


def test_etags_answer_not_modified(server):
    for path in ["/", "/assets/app.js"]:
        first = server.request("GET", path)
        etag = first.headers["etag"]
        again = server.request("GET", path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert server.request("GET", path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_head_and_an_unknown_asset(server):
    head = requests.head(server.url("/assets/style.css"), timeout=30)
    assert head.status_code == 200 and head.content == b""
    missing = server.request("GET", "/assets/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    problem = missing.json()
    assert problem["status"] == 404 and "nothing.js" in problem["detail"]

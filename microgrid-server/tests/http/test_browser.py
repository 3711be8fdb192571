"""The page `/` and Swagger UI at `/docs` in headless Chromium (Debian's
`chromium`): the DOM after the scripts ran (--dump-dom) and a screenshot
of each (kept under target/http-screenshots/, never committed)."""

from __future__ import annotations

import calendar
import datetime as dt
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import chromium

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: "Node | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text: list[str] = []

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list["Node"]:
        out = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            if all(node.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(node)
        return out

    def by_id(self, id_: str) -> "Node | None":
        found = [n for n in self.iter() if n.attrs.get("id") == id_]
        return found[0] if found else None

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all_text(self) -> str:
        return "".join(n_text for n in self.iter() for n_text in n.text)


class Tree(HTMLParser):
    """The dumped DOM as a tree (the browser's serialisation is well formed)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v or "") for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: (v or "") for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.text.append(data)


def browse(url: str, screenshot: Path | None = None, extra: list[str] | None = None) -> Node:
    """The DOM of `url` after its scripts ran; with `screenshot`, also a
    1200x900 PNG of it. `extra`: more Chromium flags."""
    exe = chromium()
    with tempfile.TemporaryDirectory(prefix="microgrid-chromium-") as profile:
        run = subprocess.run(
            [exe, *FLAGS, *(extra or []), f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, f"chromium failed ({run.returncode}):\n{run.stderr[-3000:]}"
        assert "<html" in run.stdout, f"chromium printed no DOM:\n{run.stderr[-3000:]}"
    if screenshot is not None:
        with tempfile.TemporaryDirectory(prefix="microgrid-chromium-") as profile:
            shot = subprocess.run(
                [exe, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}", "--window-size=1200,900", url],
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert shot.returncode == 0 and screenshot.is_file() and screenshot.stat().st_size > 1000, (
                f"no screenshot at {screenshot}:\n{shot.stderr[-3000:]}"
            )
    return Tree(run.stdout).root


def month_days(start: str, end: str) -> int:
    s = dt.date.fromisoformat(start[:10])
    e = dt.date.fromisoformat(end[:10])
    return (e - s).days


def series_points(dom: Node) -> dict[str, int]:
    chart = dom.by_id("chart")
    assert chart is not None and chart.tag == "svg", "the page has no <svg id=chart>"
    return {g.attrs["data-series"]: len(g.find_all("circle")) for g in chart.iter() if "data-series" in g.attrs}


def _page_url(server, key: str, fragment: bool = False) -> str:
    """The page's URL as serve prints it (query), or with the parameters in
    the fragment (which the browser never sends to the server)."""
    return server.url(f"/{'#' if fragment else '?'}key={key}&start={server.start}&end={server.end}")


def _store_name(server) -> str:
    return "memory" if server.store.startswith("memory") else "postgres"


def test_the_operator_page_draws_the_month_and_every_bill(server, screenshots):
    dom = browse(_page_url(server, server.operator_key), screenshots / f"page-operator-{_store_name(server)}.png")
    body = dom.find_all("body")[0]
    error = dom.by_id("error")
    assert body.attrs.get("data-state") == "ready", f"the page did not finish: {error.all_text() if error else ''}"
    assert body.attrs.get("data-role") == "operator"
    days = month_days(server.start, server.end)
    points = series_points(dom)
    assert set(points) == {"production", "consumption", "shared", "import", "export"}
    assert all(n == days for n in points.values()), (days, points)
    chart = dom.by_id("chart")
    y, m = int(server.start[:4]), int(server.start[5:7])
    title = " ".join(t.all_text() for t in chart.find_all("text", **{"class": "title"}))
    assert f"{calendar.month_name[m]} {y}" in title
    for g in chart.iter():
        if "data-series" in g.attrs:
            assert g.find_all("path")[0].attrs.get("d", "").count("L") == days - 1
    legend = [n for n in chart.iter() if "legend" in n.classes()]
    assert legend and len(legend[0].find_all("text")) == 5
    bills = dom.by_id("bills")
    rows = bills.find_all("tbody")[0].find_all("tr")
    assert len(rows) >= 2, "the operator sees every member's bill"
    assert all(len(r.find_all("td")) == 7 for r in rows)
    assert bills.find_all("tfoot")[0].find_all("tr"), "a totals row under several bills"


def test_a_prosumer_page_shows_only_its_own_numbers(server, screenshots):
    dom = browse(_page_url(server, server.prosumer_key, fragment=True), screenshots / f"page-prosumer-{_store_name(server)}.png")
    body = dom.find_all("body")[0]
    error = dom.by_id("error")
    assert body.attrs.get("data-state") == "ready", f"the page did not finish: {error.all_text() if error else ''}"
    assert body.attrs.get("data-role") == "prosumer"
    days = month_days(server.start, server.end)
    points = series_points(dom)
    assert set(points) == {"production", "consumption", "sold", "bought", "import", "export"}
    assert all(n == days for n in points.values()), (days, points)
    rows = dom.by_id("bills").find_all("tbody")[0].find_all("tr")
    assert [r.attrs.get("data-prosumer") for r in rows] == [server.prosumer_id]
    assert server.prosumer_id in dom.by_id("who").all_text()


def test_a_wrong_key_is_shown_as_text_on_the_page(server, screenshots):
    dom = browse(_page_url(server, "not-a-key-" + "x" * 20), screenshots / f"page-wrong-key-{_store_name(server)}.png")
    assert dom.find_all("body")[0].attrs.get("data-state") == "error"
    error = dom.by_id("error")
    assert error is not None and "hidden" not in error.attrs
    assert "401" in error.all_text()
    assert series_points(dom) == {}


def test_docs_render_every_operation(server, screenshots):
    doc = server.request("GET", "/openapi.json").json()
    operations = sum(
        1 for item in doc["paths"].values() for method in item if method in {"get", "post", "put", "patch", "delete"}
    )
    dom = browse(server.url("/docs/"), screenshots / f"docs-{_store_name(server)}.png")
    blocks = [n for n in dom.iter() if "opblock" in n.classes()]
    assert len(blocks) == operations, f"{len(blocks)} operations rendered, the document has {operations}"
    rendered = {n.all_text().strip() for n in dom.iter() if "opblock-summary-path" in n.classes()}
    for path in doc["paths"]:
        assert any(path in r.replace("\u200b", "") for r in rendered), f"{path} is not rendered"


def test_pages_under_a_host_name_load_nothing_from_another_origin(server):
    """Served under a host name rather than 127.0.0.1 (Swagger UI, for one,
    treats loopback differently), neither /docs/ nor the page loads
    anything (script, style, image, frame) from another origin."""
    port = server.base.rsplit(":", 1)[1]
    origin = f"http://microgrid.test:{port}"
    resolve = ["--host-resolver-rules=MAP microgrid.test 127.0.0.1"]
    for url in [f"{origin}/docs/", f"{origin}/#key={server.operator_key}&start={server.start}&end={server.end}"]:
        dom = browse(url, extra=resolve)
        loaded = [n.attrs["src"] for n in dom.iter() if n.attrs.get("src")]
        loaded += [n.attrs["href"] for n in dom.iter() if n.tag == "link" and n.attrs.get("href")]
        foreign = [u for u in loaded if u.startswith(("http:", "https:", "//")) and not u.startswith(origin + "/")]
        assert not foreign, f"{url} loads from another origin: {foreign}"
        assert "validator.swagger.io" not in repr([n.attrs for n in dom.iter()]), f"{url} links the online validator"
    assert [n for n in dom.iter() if n.attrs.get("data-series")], "the page drew its chart under the host name"

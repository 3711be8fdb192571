"""Checks answers against the service's own OpenAPI 3.1 document.

The schema of a response is taken from the document by JSON pointer
(`#/paths/<path>/<method>/responses/<status>/content/<type>/schema`), and the
body is validated with openapi-schema-validator's OAS31Validator (JSON
Schema 2020-12 plus OpenAPI's vocabulary), the whole document registered as
one resource so that every `$ref` into `#/components/...` resolves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import requests
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
DOC_URI = "urn:microgrid:openapi"


def pointer(*parts: str) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_json(mt: str) -> bool:
    return mt == "application/json" or mt.endswith("+json")


@dataclass
class Checker:
    doc: dict
    called: set[tuple[str, str]] = field(default_factory=set)
    statuses: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def __post_init__(self):
        self.registry = Registry().with_resource(DOC_URI, Resource(contents=self.doc, specification=DRAFT202012))

    def operations(self) -> set[tuple[str, str]]:
        return {(m.upper(), p) for p, item in self.doc["paths"].items() for m in item if m in METHODS}

    def resolve(self, node: dict) -> dict:
        """Follows a `$ref` to the document's components (responses)."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            target = self.doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def check(self, method: str, template: str, response: requests.Response) -> None:
        """Asserts that `response` is one the document lists for the
        operation, and that its body follows the schema given for it."""
        method = method.lower()
        op = self.doc["paths"].get(template, {}).get(method)
        assert op is not None, f"{method.upper()} {template} is not in the document"
        self.called.add((method.upper(), template))
        self.statuses.setdefault((method.upper(), template), set()).add(response.status_code)
        status = str(response.status_code)
        responses = op.get("responses", {})
        key = status if status in responses else f"{status[0]}XX" if f"{status[0]}XX" in responses else "default"
        assert key in responses, (
            f"{method.upper()} {template} answered {status}, which the document does not list "
            f"({sorted(responses)}): {response.text[:500]}"
        )
        entry = self.resolve(responses[key])
        content = entry.get("content") or {}
        if not content:
            return
        mt = media(response.headers.get("content-type"))
        chosen = None
        for name in content:
            if name == mt or name == "*/*" or (name.endswith("/*") and mt.startswith(name[:-1])):
                chosen = name
                break
        assert chosen is not None, (
            f"{method.upper()} {template} {status}: content type {mt!r} is not one the document gives ({sorted(content)})"
        )
        schema = content[chosen].get("schema")
        if schema is None or not is_json(mt):
            return
        base = self.doc["paths"][template][method]["responses"][key]
        if "$ref" in base:
            ref = base["$ref"][1:]
            where = ref + pointer("content", chosen, "schema")
        else:
            where = pointer("paths", template, method, "responses", key, "content", chosen, "schema")
        self.validate(response.json(), where, f"{method.upper()} {template} {status}")

    def validate(self, instance, where: str, label: str) -> None:
        validator = OAS31Validator(
            {"$ref": DOC_URI + "#" + where},
            registry=self.registry,
            format_checker=OAS31Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not errors, f"{label}: the body does not follow its schema:\n" + "\n".join(
            f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in errors[:10]
        )

    def request_schema(self, method: str, template: str, mt: str = "application/json") -> dict | None:
        op = self.doc["paths"][template][method.lower()]
        body = self.resolve(op.get("requestBody", {}))
        return (body.get("content") or {}).get(mt, {}).get("schema")


def template_of(doc: dict, method: str, path: str) -> str | None:
    """The document's path template that `path` (no query) matches."""
    for template, item in doc["paths"].items():
        if method.lower() not in item:
            continue
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(rx, path):
            return template
    return None

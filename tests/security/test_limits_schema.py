"""Every string, list and map that a request may carry is bounded in the OpenAPI document itself
(``maxLength``, ``maxItems``, ``maxProperties``; or an enum, a const, a pattern-free boolean or
number), so the contract says how large a valid request can be. Walks the served document: the
request bodies of every operation and every parameter. (On main: tags, the grid's values, the
spec's ``input_shape`` and ``device`` and the upload's ``name`` had no bound, or none stated.)"""

from __future__ import annotations

from typing import Any

import httpx

BINARY = {"binary"}  # the dataset file: bounded by max_upload_bytes, streamed to disk


def unbounded(schema: dict[str, Any], document: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    """The places under ``schema`` where a string, array or object has no stated bound."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            return []
        target: Any = document
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return unbounded(target, document, f"{where}->{ref.rsplit('/', 1)[-1]}", seen | {ref})
    found: list[str] = []
    for combinator in ("anyOf", "oneOf", "allOf"):
        for number, option in enumerate(schema.get(combinator, [])):
            found += unbounded(option, document, f"{where}|{number}", seen)
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "const" not in schema and "maxLength" not in schema \
            and schema.get("format") not in BINARY:
        found.append(f"{where}: string without maxLength")
    if kind == "array":
        if "maxItems" not in schema and "prefixItems" not in schema:
            found.append(f"{where}: array without maxItems")
        if "items" in schema:
            found += unbounded(schema["items"], document, f"{where}[]", seen)
    for name, option in schema.get("properties", {}).items():
        found += unbounded(option, document, f"{where}.{name}", seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        if "maxProperties" not in schema:
            found.append(f"{where}: map without maxProperties")
        found += unbounded(extra, document, f"{where}{{}}", seen)
        if "propertyNames" in schema:
            found += unbounded({"type": "string", **schema["propertyNames"]}, document, f"{where}{{key}}", seen)
        else:
            found.append(f"{where}: map keys without maxLength")
    if kind is None and not schema.keys() - {"title", "description", "default", "examples"}:
        found.append(f"{where}: any value")
    return found


def test_every_request_string_list_and_map_is_bounded(secured):
    document = httpx.get(f"{secured.service.url}/openapi.json", timeout=30).json()
    problems: list[str] = []
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operations += 1
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                problems += unbounded(parameter.get("schema", {}), document,
                                      f"{label} {parameter['in']} {parameter['name']}", set())
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                problems += unbounded(content.get("schema", {}), document, f"{label} body ({media})", set())
    assert operations >= 12
    assert not problems, "\n".join(problems)

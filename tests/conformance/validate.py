"""Validates FHIR R4 JSON resources with two validators that share no code with Cairn.

1. fhir.resources 6.1.0 (FHIR 4.0.1 models generated from the specification): structure,
   datatypes, primitive formats, choice types, unknown elements.
2. The FHIR 4.0.1 JSON schema (fhir.schema.json): required bindings (code enums), primitive
   patterns, cardinality, unknown elements.

Reads a JSON array of {"label": ..., "resource": {...}} from stdin. Prints one line per
failure and exits 1 if any resource fails, 0 otherwise. Usage:
    validate.py SCHEMA_PATH < resources.json
"""

import json
import sys

import jsonschema
from fhir.resources import construct_fhir_element

SUBSETTED = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"


def is_subsetted(resource):
    """A `_summary`/`_elements` answer: required elements may be absent by design."""
    tags = (resource.get("meta") or {}).get("tag") or []
    return any(t.get("system") == SUBSETTED and t.get("code") == "SUBSETTED" for t in tags)


def schema_validator(schema_path):
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    definitions = schema["definitions"]
    cls = jsonschema.validators.validator_for(schema)
    cache = {}

    def validator(resource_type):
        if resource_type not in cache:
            if resource_type not in definitions:
                return None
            root = {"$ref": f"#/definitions/{resource_type}", "definitions": definitions}
            cache[resource_type] = cls(root)
        return cache[resource_type]

    return validator


# Stands in for a carried resource while its container is checked: the carried resource is
# checked on its own, so that a failure names it (not a `oneOf` over every resource type) and
# a subsetted one is judged as subsetted.
PLACEHOLDER = {"resourceType": "Basic", "code": {"text": "checked on its own"}}


def resources_within(resource):
    """The resource (with carried resources replaced by PLACEHOLDER), then each resource a
    Bundle entry, entry outcome or Parameters parameter carries, recursively."""
    shell = json.loads(json.dumps(resource))
    carried = []
    for i, entry in enumerate(shell.get("entry") or []):
        if isinstance(entry.get("resource"), dict):
            carried.append((f".entry[{i}].resource", entry["resource"]))
            entry["resource"] = PLACEHOLDER
        response = entry.get("response") or {}
        if isinstance(response.get("outcome"), dict):
            carried.append((f".entry[{i}].response.outcome", response["outcome"]))
            response["outcome"] = PLACEHOLDER
    for i, param in enumerate(shell.get("parameter") or []):
        if isinstance(param.get("resource"), dict):
            carried.append((f".parameter[{i}].resource", param["resource"]))
            param["resource"] = PLACEHOLDER
    yield "", shell
    for path, inner in carried:
        yield from ((f"{path}{p}", r) for p, r in resources_within(inner))


def main():
    validator = schema_validator(sys.argv[1])
    items = json.load(sys.stdin)
    failures = 0
    checked = 0
    for item in items:
        label = item["label"]
        for path, resource in resources_within(item["resource"]):
            where = f"{label}{path}"
            resource_type = resource.get("resourceType")
            checked += 1
            if is_subsetted(resource):
                # Required elements may be missing from a subsetted resource; the schema's
                # formats and codes still hold, and are checked below.
                pass
            else:
                try:
                    construct_fhir_element(resource_type, resource)
                except Exception as error:  # pydantic reports every problem at once
                    failures += 1
                    print(f"FAIL fhir.resources {where} ({resource_type}): {error}")
            schema = validator(resource_type)
            if schema is None:
                failures += 1
                print(f"FAIL schema {where}: unknown resourceType {resource_type!r}")
                continue
            for error in schema.iter_errors(resource):
                if is_subsetted(resource) and error.validator == "required":
                    continue
                failures += 1
                location = "/".join(str(p) for p in error.absolute_path)
                print(f"FAIL schema {where} at /{location}: {error.message[:300]}")
    print(f"validated {checked} resources from {len(items)} responses: {failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

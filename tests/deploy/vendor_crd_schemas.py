#!/usr/bin/env python3
"""Extracts the validation schema of a CustomResourceDefinition into tests/deploy/crd-schemas/, for
check_manifests.py to validate our custom resources (ServiceMonitor, ServingRuntime, InferenceService) the way the
API server would.

    vendor_crd_schemas.py CRD.yaml SOURCE [LICENCE]    e.g.
    vendor_crd_schemas.py serving.kserve.io_servingruntimes.yaml \
        "github.com/kserve/kserve@<commit>:config/crd/full/serving.kserve.io_servingruntimes.yaml" Apache-2.0

Writes <plural>.<group>-<version>.json for every served version. The schema is the CRD's openAPIV3Schema with two
mechanical changes that keep its meaning and make it small enough to keep in the repository: `description` texts
are dropped, and every subschema that occurs more than once (KServe's InferenceService repeats the whole PodSpec
for each component) is stored once under "$defs" and referred to with "$ref". Nothing else is changed: strictness
(unknown fields are errors) is added when the test loads the file, not here.
"""
import hashlib
import json
import os
import sys
from collections import Counter

import yaml

# Subschemas shorter than this stay inline: factoring them out would save little and cost readability.
SHARED_MINIMUM_CHARACTERS = 300


def subschemas(schema):
    """The schemas directly inside `schema`: only under the keywords that hold schemas, so a map of property
    names (a field may be called "description" or "type") is never mistaken for a schema."""
    yield from schema.get("properties", {}).values()
    for keyword in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(keyword), dict):
            yield schema[keyword]
    for keyword in ("allOf", "anyOf", "oneOf"):
        yield from schema.get(keyword, [])


def with_subschemas(schema, change):
    """A copy of `schema` whose direct subschemas are replaced by change(subschema)."""
    out = dict(schema)
    if "properties" in schema:
        out["properties"] = {name: change(sub) for name, sub in schema["properties"].items()}
    for keyword in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(keyword), dict):
            out[keyword] = change(schema[keyword])
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema:
            out[keyword] = [change(sub) for sub in schema[keyword]]
    return out


def without_descriptions(schema):
    out = with_subschemas(schema, without_descriptions)
    out.pop("description", None)
    return out


def canonical(node):
    return json.dumps(node, separators=(",", ":"), sort_keys=True)


def share_repeated_subschemas(schema):
    """Returns the schema with repeated large subschemas moved to "$defs" (named by a hash of their content)."""
    occurrences = Counter()

    def count(node):
        text = canonical(node)
        if len(text) >= SHARED_MINIMUM_CHARACTERS:
            occurrences[text] += 1
        for sub in subschemas(node):
            count(sub)

    count(schema)
    definitions = {}

    def rewrite(node, is_root=False):
        text = canonical(node)
        if not is_root and len(text) >= SHARED_MINIMUM_CHARACTERS and occurrences[text] > 1:
            name = "s" + hashlib.sha256(text.encode()).hexdigest()[:16]
            if name not in definitions:
                definitions[name] = None  # reserved before recursing, so a name is written once
                definitions[name] = rewrite(node, is_root=True)
            return {"$ref": "#/$defs/" + name}
        return with_subschemas(node, rewrite)

    shared = rewrite(schema, is_root=True)
    if definitions:
        shared["$defs"] = dict(sorted(definitions.items()))
    return shared


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().split("\n\n")[1])
    crd_path, source = sys.argv[1], sys.argv[2]
    licence = sys.argv[3] if len(sys.argv) == 4 else "Apache-2.0"
    with open(crd_path, encoding="utf-8") as handle:
        crd = yaml.safe_load(handle)
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        sys.exit(f"{crd_path}: not a CustomResourceDefinition")
    spec = crd["spec"]
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd-schemas")
    for version in spec["versions"]:
        if not version.get("served", False):
            continue
        document = {
            "x-vendored": {
                "source": source,
                "licence": licence,
                "group": spec["group"],
                "kind": spec["names"]["kind"],
                "version": version["name"],
                "changes": "descriptions dropped; repeated subschemas moved to $defs (vendor_crd_schemas.py)",
            },
            "schema": share_repeated_subschemas(without_descriptions(version["schema"]["openAPIV3Schema"])),
        }
        name = f"{spec['names']['plural']}.{spec['group']}-{version['name']}.json"
        path = os.path.join(out_dir, name)
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(temporary, path)
        print(f"{name}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()

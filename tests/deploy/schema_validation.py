"""Validates objects against the schemas the API server would use, strictly (an unknown field is an error, as with
`kubectl apply`'s default --validate=strict).

Built-in kinds: kubernetes-validate's JSON schemas for a given Kubernetes version, strict variant.
Custom resources: the CRD schemas vendored in crd-schemas/ (vendor_crd_schemas.py), loaded here the way the API
server applies a structural schema: unknown fields are refused wherever the schema lists properties and neither
allows more (additionalProperties) nor says x-kubernetes-preserve-unknown-fields; x-kubernetes-int-or-string and
nullable are honoured; metadata is checked against Kubernetes' own ObjectMeta schema. The CRDs used carry no CEL
rules (x-kubernetes-validations); one that did would be reported, since this check cannot evaluate it.
"""
import glob
import json
import os

import jsonschema
import kubernetes_validate
import referencing
from kubernetes_validate import utils as kv_utils
from kubernetes_validate.version import __version__ as KUBERNETES_VALIDATE_VERSION

CRD_SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd-schemas")
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class SchemaProblem(Exception):
    pass


def newest_kubernetes_version():
    return kv_utils.latest_version()


def shipped_kubernetes_versions():
    return kv_utils.all_versions()


def _strict_structural(schema, path="", cel_rules=None):
    """A copy of an OpenAPI v3 structural schema as a JSON schema with the API server's strictness. Walks only the
    keywords that hold subschemas, so a field that happens to be called "properties" or "type" is left alone."""
    if isinstance(schema, bool) or not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "x-kubernetes-validations" in out and cel_rules is not None:
        cel_rules.append(path or "/")
    if out.get("x-kubernetes-int-or-string") and "type" not in out:
        out["type"] = ["integer", "string"]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["properties"] = {name: _strict_structural(sub, f"{path}/{name}", cel_rules)
                             for name, sub in out["properties"].items()}
        if out.get("x-kubernetes-embedded-resource"):
            for implicit in ("apiVersion", "kind", "metadata"):
                out["properties"].setdefault(implicit, {})
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict_structural(out["additionalProperties"], f"{path}/*", cel_rules)
    if "items" in out:
        out["items"] = _strict_structural(out["items"], f"{path}[]", cel_rules)
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in out:
            out[keyword] = [_strict_structural(sub, path, cel_rules) for sub in out[keyword]]
    if "not" in out:
        out["not"] = _strict_structural(out["not"], path, cel_rules)
    if "$defs" in out:
        out["$defs"] = {name: _strict_structural(sub, f"$defs/{name}", cel_rules) for name, sub in out["$defs"].items()}
    return out


def _definitions_resource(version):
    contents = kv_utils.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    return referencing.Resource.from_contents(contents)


def load_crd_schemas():
    """{(group/version, kind): (strict schema, source, CEL rule paths)} for every vendored CRD schema."""
    schemas = {}
    for path in sorted(glob.glob(os.path.join(CRD_SCHEMA_DIR, "*.json"))):
        with open(path, encoding="utf-8") as handle:
            vendored = json.load(handle)
        about = vendored["x-vendored"]
        cel_rules = []
        schema = _strict_structural(vendored["schema"], cel_rules=cel_rules)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema.setdefault("properties", {})["metadata"] = {"$ref": OBJECT_META}
        schemas[(f"{about['group']}/{about['version']}", about["kind"])] = (schema, about["source"], cel_rules)
    return schemas


def validate(document, kubernetes_version, crd_schemas):
    """Returns how the object was checked ("kubernetes 1.37", "CRD ..."); raises SchemaProblem when it is invalid
    or no schema knows its kind."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in crd_schemas:
        schema, source, cel_rules = crd_schemas[key]
        if cel_rules:
            raise SchemaProblem(f"the {key[1]} schema has CEL rules this check cannot evaluate, at {cel_rules}")
        registry = _definitions_resource(kubernetes_version) @ referencing.Registry()
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        if errors:
            raise SchemaProblem("; ".join(f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
                                          for error in errors[:5]))
        return f"CRD schema from {source}"
    try:
        checked = kubernetes_validate.validate(document, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise SchemaProblem(f"{'.'.join(map(str, error.path)) or '(top)'}: {error.message}") from error
    except kv_utils.SchemaNotFoundError as error:
        raise SchemaProblem(f"no schema: {error.message} (nor a vendored CRD schema)") from error
    return f"Kubernetes {checked} schema (kubernetes-validate {KUBERNETES_VALIDATE_VERSION}, strict)"

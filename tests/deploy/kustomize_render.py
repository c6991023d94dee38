"""The part of kustomize the manifests use, done in Python (kustomize itself is not a Debian 12 package; Debian's
kubernetes-client would clash with other kubectl packages on a developer's machine).

render(folder) reads folder/kustomization.yaml, accepts only `resources:` naming plain files in the folder (any
other kustomize field would be a transformation this renderer does not perform, so it is refused rather than
ignored), requires every YAML file in the folder to be listed (except the ones named in `not_resources`), and
returns the objects, in order, as (file name, object) pairs: what `kubectl apply -k folder` sends.
"""
import glob
import json
import os
import shutil
import subprocess

import yaml

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources"}


class RenderError(Exception):
    pass


def load_documents(path):
    """The YAML documents of a file, empty ones dropped (kubectl drops them too)."""
    with open(path, encoding="utf-8") as handle:
        try:
            return [document for document in yaml.safe_load_all(handle) if document is not None]
        except yaml.YAMLError as error:
            raise RenderError(f"{path}: not valid YAML: {error}") from error


def render(folder, not_resources=()):
    kustomization_path = os.path.join(folder, "kustomization.yaml")
    if not os.path.isfile(kustomization_path):
        raise RenderError(f"{folder} has no kustomization.yaml")
    documents = load_documents(kustomization_path)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise RenderError(f"{kustomization_path}: expected one mapping")
    kustomization = documents[0]
    if kustomization.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kustomization.get("kind") != "Kustomization":
        raise RenderError(f"{kustomization_path}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    unsupported = set(kustomization) - KUSTOMIZATION_FIELDS
    if unsupported:
        raise RenderError(f"{kustomization_path}: fields this renderer does not implement: {sorted(unsupported)}")
    resources = kustomization.get("resources") or []
    if not isinstance(resources, list) or not all(isinstance(name, str) for name in resources):
        raise RenderError(f"{kustomization_path}: resources must be a list of file names")
    if len(set(resources)) != len(resources):
        raise RenderError(f"{kustomization_path}: a resource is listed twice")
    for name in resources:
        if os.path.basename(name) != name or not name.endswith((".yaml", ".yml")):
            raise RenderError(f"{kustomization_path}: resource {name!r} is not a YAML file in {folder}")
        if not os.path.isfile(os.path.join(folder, name)):
            raise RenderError(f"{kustomization_path}: resource {name} does not exist")
    on_disk = {os.path.basename(path) for pattern in ("*.yaml", "*.yml") for path in glob.glob(os.path.join(folder, pattern))}
    unlisted = sorted(on_disk - set(resources) - {"kustomization.yaml"} - set(not_resources))
    if unlisted:
        raise RenderError(f"{kustomization_path}: {', '.join(unlisted)} in the folder but not listed in resources")

    objects, seen = [], set()
    for name in resources:
        for document in load_documents(os.path.join(folder, name)):
            if not isinstance(document, dict) or not all(key in document for key in ("apiVersion", "kind", "metadata")):
                raise RenderError(f"{folder}/{name}: a document without apiVersion, kind and metadata")
            identity = (document["apiVersion"].split("/")[0] if "/" in document["apiVersion"] else "",
                        document["kind"], document["metadata"].get("name"))
            if identity in seen:
                raise RenderError(f"{folder}/{name}: {identity[1]} {identity[2]} is defined twice")
            seen.add(identity)
            objects.append((name, document))
    return objects


def kubectl_kustomize(folder):
    """The objects `kubectl kustomize folder` renders, or None when no kubectl is installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    rendered = subprocess.run([kubectl, "kustomize", folder], capture_output=True, text=True, timeout=120)
    if rendered.returncode != 0:
        raise RenderError(f"kubectl kustomize {folder} failed: {rendered.stderr.strip()}")
    return [document for document in yaml.safe_load_all(rendered.stdout) if document is not None]


def same_objects(ours, theirs):
    """Whether two renderings hold the same objects, in any order."""
    canonical = lambda documents: sorted(json.dumps(document, sort_keys=True) for document in documents)
    return canonical(ours) == canonical(theirs)

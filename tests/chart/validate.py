"""Validates Kubernetes manifests against the published OpenAPI v3 schemas
(api/openapi-spec/v3 of the k8s.io/kubernetes Go module), strictly: a field
the API does not know is an error, as kubectl's server-side validation says.

usage: validate.py SPEC_DIR FILE_OR_- ...   (multi-document YAML)"""
import copy
import glob
import json
import sys

import jsonschema
import yaml


def load_schemas(spec_dir):
    schemas = {}
    for f in glob.glob(f"{spec_dir}/*.json"):
        schemas.update(json.load(open(f)).get("components", {}).get("schemas", {}))
    index = {}
    for name, s in schemas.items():
        for gvk in s.get("x-kubernetes-group-version-kind", []):
            index[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return schemas, index


def strict(node):
    """Objects with known properties admit no others (maps keep additionalProperties)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def main():
    spec_dir, files = sys.argv[1], sys.argv[2:]
    schemas, index = load_schemas(spec_dir)
    root = {"components": {"schemas": strict(copy.deepcopy(schemas))}}
    bad = checked = 0
    for f in files:
        text = sys.stdin.read() if f == "-" else open(f).read()
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            group, _, version = doc["apiVersion"].rpartition("/")
            if group == "monitoring.coreos.com":
                continue  # not Kubernetes' own: monitorcheck decodes them into the operator's types
            name = index.get((group, version, doc["kind"]))
            where = f"{f}: {doc['kind']} {doc.get('metadata', {}).get('name', '?')}"
            if not name:
                print(f"INVALID {where}: unknown apiVersion/kind {doc['apiVersion']}/{doc['kind']}")
                bad += 1
                continue
            schema = dict(root, **{"$ref": f"#/components/schemas/{name}"})
            errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
            checked += 1
            for e in errors[:5]:
                print(f"INVALID {where}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
            bad += bool(errors)
    print(f"validate: {checked} manifests checked against Kubernetes OpenAPI, {bad} invalid")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

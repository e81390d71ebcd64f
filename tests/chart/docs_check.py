"""The chart's README against what it documents: every value of values.yaml
has a row in the values table, every metric the driver publishes is named,
and every StorageClass parameter the schema accepts has a row (the driver's
own list is checked against the schema by tests/integration/test_parameters.py).

usage: docs_check.py REPO_ROOT"""
import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(sys.argv[1])
chart = root / "charts/warmcache"
readme = (chart / "README.md").read_text()
rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
bad = []

# maps whose keys are the user's (resources, labels, ...) are one row
WHOLE = {"resources", "affinity", "parameters", "annotations", "labels", "podAnnotations", "podLabels", "nodeSelector"}


def leaves(d, p=""):
    for k, x in d.items():
        q = f"{p}.{k}" if p else k
        if isinstance(x, dict) and x and k not in WHOLE:
            yield from leaves(x, q)
        else:
            yield q


for v in leaves(yaml.safe_load((chart / "values.yaml").read_text())):
    if v not in rows:
        bad.append(f"value {v} has no row in charts/warmcache/README.md")

metrics = set()
for f in (root / "driver").rglob("*.c"):
    metrics |= set(re.findall(r'"(warmcache_[a-z0-9_]+)"', f.read_text()))
for m in sorted(metrics):
    # warmcache_store_{capacity,used,evictable}_bytes stands for three
    brace = re.sub(r"_(capacity|used|evictable)_bytes$", "_{capacity,used,evictable}_bytes", m)
    if m not in readme and brace not in readme:
        bad.append(f"metric {m} is not in charts/warmcache/README.md")

schema = json.loads((chart / "values.schema.json").read_text())
names = schema["properties"]["storageClass"]["properties"]["parameters"]["propertyNames"]["anyOf"][0]["enum"]
for p in names:
    if p not in rows:
        bad.append(f"StorageClass parameter {p} (in the schema) has no row in charts/warmcache/README.md")
for b in bad:
    print("docs:", b)
if bad:
    sys.exit(1)
print(f"docs: chart README names all {len(list(leaves(yaml.safe_load((chart / 'values.yaml').read_text()))))} values, "
      f"{len(metrics)} metrics, {len(names)} parameters")

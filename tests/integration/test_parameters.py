"""The StorageClass parameters the driver knows, as the driver itself says
(the list in its "unknown parameter" error), against the chart's schema and
the READMEs: a parameter the driver accepts but the schema refused (as
`prewarm` once was) could not be set through the chart at all."""
import json
from pathlib import Path

import pytest

from conftest import CtlError, Driver

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = {"sourceChangePolicy": "Follow", "region": "us-east-1", "endpoint": "http://127.0.0.1:1",
          "addressingStyle": "path", "prewarm": "kubernetes.io/os=linux", "allowPlainHTTP": "true",
          "scratchSize": "1Gi", "pvcOverrides": "source", "pvcSourcePrefixes": "file:///models/"}


def test_the_schema_accepts_what_the_driver_knows(work, model):
    d = Driver(work).start("--mode=controller")
    try:
        with pytest.raises(CtlError) as ei:
            d.ctl("create", "v", "-p", f"source=file://{model}/", "-p", "sorce=typo")
        assert ei.value.code == "INVALID_ARGUMENT"
        known = [k.strip() for k in ei.value.message.split("warmcache knows: ", 1)[1].split(",")]
        assert "source" in known and "prewarm" in known, known
        # each one listed is taken as a parameter (it may still be refused for its value or with file://)
        for k in known:
            if k == "source":
                continue
            try:
                d.ctl("create", f"v-{k.lower()}", "-p", f"source=file://{model}/", "-p", f"{k}={SAMPLE[k]}")
            except CtlError as e:
                assert "unknown StorageClass parameter" not in e.message, (k, e.message)
    finally:
        assert d.stop() == 0
    schema = json.loads((ROOT / "charts/warmcache/values.schema.json").read_text())
    names = schema["properties"]["storageClass"]["properties"]["parameters"]["propertyNames"]["anyOf"][0]["enum"]
    assert sorted(names) == sorted(known)
    for doc in ("README.md", "charts/warmcache/README.md"):
        text = (ROOT / doc).read_text()
        missing = [k for k in known if f"| `{k}` |" not in text]
        assert not missing, f"{doc} has no row for {missing}"

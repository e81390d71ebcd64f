"""Stress tests reuse the integration fixtures (real driver, tmpfs, mounts),
loaded under another module name so this file can re-export them."""
import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location("wc_integration_conftest", _path)
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("_")})

"""The Python client (api.client) is light: importing it loads none of the service's heavy
libraries, so a script that only talks to the API starts fast and installs little."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "sqlalchemy", "cleanlab", "pandas", "celery", "fastapi", "numpy")


def test_importing_the_client_loads_no_heavy_library():
    code = f"import api.client, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"

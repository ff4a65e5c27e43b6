"""Validate a RET deployment end to end: ``python tests/validate_system.py`` from ``backend/``.

Prints one ✅/❌ line per check and exits 1 if any fails. Same as ``ret validate``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from backend/: make the `api` package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.cli import app

if __name__ == "__main__":
    app(["validate", *sys.argv[1:]], prog_name="validate_system.py")

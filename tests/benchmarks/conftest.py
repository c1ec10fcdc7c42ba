"""The benchmark scripts import their sibling ``_common``; make ``benchmarks/`` importable."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

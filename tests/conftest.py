"""The test harness: fixtures for real PostgreSQL 15 clusters, pgbundle servers and poolers,
one plugin each (psycopg's ``tests/fix_*.py`` habit), and the two lanes.

* ``tests/unit/`` holds the tests that start no process and open no socket:
  ``pytest -m "not slow"`` (``make test-fast``) runs them in seconds.
* Every other test starts real processes and is marked ``slow`` here, by where it lives.

Helpers that are not fixtures: ``tests/procs.py`` (free ports, waiting, process groups) and
``tests/strategies.py`` (hypothesis strategies).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fix_pg", "tests.fix_server", "tests.fix_pooler", "tests.fix_tls"]

UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        if UNIT not in Path(str(item.path)).parents:
            item.add_marker(slow)

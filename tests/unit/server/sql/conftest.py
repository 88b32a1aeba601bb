"""Fixture for the SQL layer's unit tests: a Session over the in-memory engine."""

from __future__ import annotations

import pytest

from .session_client import Client


@pytest.fixture
def db() -> Client:
    return Client()

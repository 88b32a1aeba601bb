"""Hypothesis strategies shared by tests of both programs."""

from __future__ import annotations

from hypothesis import strategies as st


def mutated_streams(valid: bytes):
    """Hypothesis strategy for the listener fuzz tests (pooler and server): random bytes, and
    ``valid`` with bytes inserted, a range cut out, or one byte changed."""
    n = len(valid)
    return st.one_of(
        st.binary(max_size=300),
        st.builds(lambda i, b: valid[:i] + b + valid[i:], st.integers(0, n), st.binary(min_size=1, max_size=8)),
        st.builds(lambda i, j: valid[:i] + valid[j:], st.integers(0, n), st.integers(0, n)),
        st.builds(lambda i, x: valid[:i] + bytes([x]) + valid[i + 1:], st.integers(0, n - 1), st.integers(0, 255)),
    )

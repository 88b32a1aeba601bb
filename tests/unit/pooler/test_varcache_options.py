"""The startup packet's ``options`` as pgbouncer reads it (its test_options_startup_param)."""

from __future__ import annotations

import pytest

from pgbundle.pooler.varcache import OPTIONS_REFUSED, parse_options


def test_settings_with_escapes():
    assert parse_options(r"-c t\imezone=\P\o\r\t\ugal  -c    dat\estyle\=\Ge\rman,\ YMD", strict=True) == {
        "timezone": "Portugal", "datestyle": "German, YMD"}
    assert parse_options("-c timezone=UTC --search-path=app", strict=True) == {
        "timezone": "UTC", "search_path": "app"}


@pytest.mark.parametrize("options", ["-d", "-c timezone", "--work_mem", "timezone=UTC"])
def test_anything_else_is_refused(options):
    with pytest.raises(ValueError) as ei:
        parse_options(options, strict=True)
    # pgbouncer's words, which its own test matches
    assert str(ei.value) == OPTIONS_REFUSED == (
        "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed")
    parse_options(options)  # lenient (options in ignore_startup_parameters): skipped, no error

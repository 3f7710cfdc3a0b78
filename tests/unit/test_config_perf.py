"""Settings for precomputed verdicts, kept affected answers and the decision journal: defaults, bad values."""

from __future__ import annotations

import pytest

from gate.config import Settings
from gate.errors import InvalidArgument


def test_defaults_keep_verdicts_and_write_records_durably() -> None:
    settings = Settings.from_env({})
    assert settings.verdict_cache_size == 10_000
    assert settings.affected_cache_rows == 50_000
    assert settings.affected_store_min_rows == 250
    assert settings.affected_warm_every == 120.0
    assert settings.affected_watch_every == 10.0
    assert settings.decision_log == "durable"


def test_values_are_read_and_normalized() -> None:
    settings = Settings.from_env(
        {
            "GATE_VERDICT_CACHE_SIZE": "0",
            "GATE_AFFECTED_CACHE_ROWS": "0",
            "GATE_AFFECTED_STORE_MIN_ROWS": "0",
            "GATE_AFFECTED_WARM_EVERY": "30",
            "GATE_AFFECTED_WATCH_EVERY": "2.5",
            "GATE_DECISION_LOG": " Buffered ",
        }
    )
    assert settings.verdict_cache_size == 0
    assert settings.affected_cache_rows == 0
    assert settings.affected_store_min_rows == 0
    assert settings.affected_warm_every == 30.0
    assert settings.affected_watch_every == 2.5
    assert settings.decision_log == "buffered"
    assert Settings.from_env({"GATE_DECISION_LOG": "DISTINCT"}).decision_log == "distinct"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATE_DECISION_LOG", "async"),
        ("GATE_VERDICT_CACHE_SIZE", "-1"),
        ("GATE_VERDICT_CACHE_SIZE", "many"),
        ("GATE_AFFECTED_CACHE_ROWS", "-5"),
        ("GATE_AFFECTED_STORE_MIN_ROWS", "-1"),
        ("GATE_AFFECTED_WARM_EVERY", "soon"),
        ("GATE_AFFECTED_WATCH_EVERY", "-1"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Settings.from_env({name: value})
    assert err.value.field == name

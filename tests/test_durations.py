"""Durations as users type them on the command line."""

import pytest

from ctscreen.durations import duration_seconds


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("30m", 1800), ("12h", 43200), ("3d", 259200), (" 1d ", 86400)])
def test_durations(text, seconds):
    assert duration_seconds(text, "--every") == seconds


@pytest.mark.parametrize("text", ["0d", "3", "1.5h", "-2m", "3w", ""])
def test_bad_durations_name_the_option(text):
    with pytest.raises(ValueError, match="--timestamp-expiry"):
        duration_seconds(text, "--timestamp-expiry")

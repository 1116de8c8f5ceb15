"""The lab's count of celery beat ticks (tests/lab/beat.py): lost and doubled seconds."""

from __future__ import annotations

import json
from pathlib import Path

from tests.lab.beat import Tick, read_ticks, tally


def test_a_second_no_beat_sent_is_lost_and_one_sent_twice_is_doubled() -> None:
    ticks = [Tick(10.01, "gen5@h1"), Tick(11.02, "gen5@h1"), Tick(13.5, "gen9@h2"), Tick(13.9, "gen5@h1")]
    counted = tally(ticks)
    assert (counted.first, counted.last, counted.seconds) == (10, 13, 4)
    assert counted.lost == (12,)
    assert counted.doubled == ((13, ("gen9@h2", "gen5@h1")),)


def test_the_span_counts_seconds_before_the_first_tick_as_lost() -> None:
    counted = tally([Tick(12.2, "gen5@h1")], first=10, last=12)
    assert counted.lost == (10, 11) and counted.doubled == ()


def test_messages_are_read_back_with_their_sender_and_a_partial_file_is_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "beat"
    folder.mkdir()
    message = {"headers": {"argsrepr": "[1796662340.00891]", "origin": "gen42@h3"}, "body": ""}
    (folder / "1_a.celery.msg").write_text(json.dumps(message))
    (folder / "2_b.celery.msg").write_text('{"headers": {"argsre')  # still being written
    ticks = read_ticks(tmp_path)
    assert ticks == [Tick(1796662340.00891, "gen42@h3")]
    assert ticks[0].host == "h3" and ticks[0].second == 1796662340

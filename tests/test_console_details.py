"""The console's small things: times said the way people say them, and the Import page's table
of earlier imports saying when they ran rather than a timestamp."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import import_views

NOW = datetime(2026, 12, 1, 14, 3, tzinfo=timezone.utc)


@pytest.mark.parametrize("ago, said", [
    (timedelta(seconds=5), "just now"),
    (timedelta(seconds=-20), "just now"),
    (timedelta(minutes=5, seconds=40), "5 min ago"),
    (timedelta(hours=3, minutes=10), "3 h ago"),
    (timedelta(days=1, hours=2), "30 Nov 12:03"),
    (timedelta(days=400), "27 Oct 2025"),
])
def test_a_time_is_said_as_people_say_it(ago, said):
    assert import_views.when(NOW - ago, NOW) == said


def test_a_time_has_no_seconds_nor_microseconds():
    said = import_views.when(datetime(2026, 3, 2, 9, 7, 31, 123456, tzinfo=timezone.utc), NOW)
    assert said == "2 Mar 09:07"


def test_the_import_page_shows_when_earlier_imports_ran_not_a_timestamp(open_page, db, tmp_path, run_imports):
    import json

    from helpers import IMPORT_OWNER
    from mail.demo import write_demo_mbox

    import app_state

    for name in ("a", "b"):
        mbox = tmp_path / f"{name}.mbox"
        write_demo_mbox(mbox, count=3)
        app_state.import_queue().enqueue_path(IMPORT_OWNER, str(mbox))
        run_imports()
    app = open_page()
    table = app.dataframe[0]
    columns = json.loads(table.proto.columns)
    assert columns["When"]["type_config"]["type"] == "datetime" and \
        columns["When"]["type_config"]["format"] == "distance"

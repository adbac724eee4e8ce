"""The online rate (上线率) of a local day from the terminals' online / offline history."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2031, 5, 6)  # a day no other test writes history for


def at(hours: float) -> datetime:
    """Local time ``hours`` after the day's midnight (negative: the day before)."""
    return datetime(DAY.year, DAY.month, DAY.day, tzinfo=TZ) + timedelta(hours=hours)


@pytest.fixture
def fleet(db):
    company = "ZZ-ONLINE"
    db.execute("INSERT INTO companies (id, name) VALUES (%s, 'online test') "
               "ON CONFLICT DO NOTHING", (company,))
    devices = [f"ONL{i}" for i in range(6)]
    for d in devices:
        db.execute("INSERT INTO vehicles (plate, device_id, company_id) VALUES (%s, %s, %s)"
                   " ON CONFLICT DO NOTHING", (f"P-{d}", d, company))
    db.execute("DELETE FROM device_status_changes WHERE device_id = ANY(%s)", (devices,))
    db.commit()
    return company, devices


def test_online_at_any_moment_of_the_local_day_counts(db, fleet):
    company, d = fleet
    history = [
        (d[0], True, at(9)), (d[0], False, at(17)),  # a working day
        (d[1], True, at(-30)),  # online since the day before, never went off
        (d[2], True, at(-5)), (d[2], False, at(-1)),  # only the evening before
        (d[3], True, at(23.9)),  # came online just before midnight
        (d[4], True, at(24.1)),  # just after it: the next day
        # d[5]: never announced anything
    ]
    db.cursor().executemany("INSERT INTO device_status_changes (device_id, online, at)"
                            " VALUES (%s, %s, %s)", history)
    db.commit()
    row = db.execute("SELECT vehicles, online, rate FROM online_rate(%s, 'Asia/Shanghai')"
                     " WHERE company_id = %s", (DAY, company)).fetchone()
    assert row[0] == 6 and row[1] == 3 and float(row[2]) == 0.5  # d0, d1, d3
    # the day is the zone's: d4's 00:06 (+08) the next day is 16:06 UTC this day
    utc = db.execute("SELECT online FROM online_rate(%s, 'UTC') WHERE company_id = %s",
                     (DAY, company)).fetchone()
    assert utc == (4,)

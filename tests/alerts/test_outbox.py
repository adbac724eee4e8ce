"""Routing events to subscriptions and the payload: filters, stable ids, the JSON Schema in
docs/alerts.md, and the config file's subscriptions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.outbox import AlertRouter, payload, webhook_id
from alerts.signing import new_secret
from alerts.subscriptions import RULES, Subscription, SubscriptionError
from domain.config import ConfigError, load_settings
from domain.events import Phase, ViolationEvent

DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
SCHEMA = json.loads(re.search(r"<!-- schema -->\s*```json\n(.*?)```", DOC.read_text(),
                              re.S).group(1))
SECRET = new_secret()


def event(**kw) -> ViolationEvent:
    base = {"id": "dum-1", "phase": Phase.OPENED, "rule": "UNAUTHORISED_DUMP",
            "device_id": "013800000001", "start_ts": 1_795_053_600_000, "end_ts": None,
            "start_lon": 114.05, "start_lat": 22.55, "severity": 3, "plate": "粤B00001",
            "company_id": "C01", "permit_id": "P0001"}
    return ViolationEvent(**{**base, **kw})


def sub(**kw) -> Subscription:
    return Subscription.from_config({"id": "s1", "url": "http://127.0.0.1:9/h",
                                     "secret": SECRET, **kw})


@settings(max_examples=80, deadline=None)
@given(rule=st.sampled_from(RULES), phase=st.sampled_from(list(Phase)),
       severity=st.integers(1, 3), closed=st.booleans(), late=st.booleans(),
       peak=st.one_of(st.none(), st.floats(0, 1e5)),
       lon=st.floats(73, 135), lat=st.floats(18, 53))
def test_every_payload_matches_the_documented_schema(rule, phase, severity, closed, late,
                                                     peak, lon, lat):
    e = event(rule=rule, phase=phase, severity=severity, late=late, peak=peak,
              start_lon=lon, start_lat=lat,
              end_ts=1_795_053_700_000 if closed else None, end_lon=lon if closed else None,
              end_lat=lat if closed else None,
              fence_id="RZ03" if rule == "RESTRICTED_ZONE" else None)
    body = payload(e, "https://muck.example/violations/{id}")
    jsonschema.validate(body, SCHEMA)
    assert body["type"] == f"violation.{phase.value}"
    assert body["evidence"]["url"] == "https://muck.example/violations/dum-1"
    if lon and 73 < lon < 135:
        assert body["violation"]["start"]["gcj02"]["lon"] != body["violation"]["start"]["lon"]


def test_the_documented_example_matches_the_schema():
    example = json.loads(re.search(r"## Payload\s*```json\n(.*?)```", DOC.read_text(),
                                   re.S).group(1))
    jsonschema.validate(example, SCHEMA)


def test_filters_and_stable_ids():
    subs = [sub(id="all"), sub(id="dumps", rules=["UNAUTHORISED_DUMP"], min_severity=3),
            sub(id="c02", companies=["C02"]), sub(id="zone", zones=["RZ03"]),
            sub(id="futian", area={"type": "Polygon", "coordinates": [[[114.0, 22.5],
                 [114.1, 22.5], [114.1, 22.6], [114.0, 22.6], [114.0, 22.5]]]}),
            sub(id="updates", events=["updated"]), sub(id="off", enabled=False)]
    router = AlertRouter(subs)
    rows = router.route([event(), event(phase=Phase.UPDATED, peak=3.0)])
    assert sorted(r.subscription_id for r in rows if r.event == "opened") == \
        ["all", "dumps", "futian"]
    assert [r.subscription_id for r in rows if r.event == "updated"] == ["updates"]
    elsewhere = router.route([event(start_lon=113.9, severity=2, rule="OFF_ROUTE")])
    assert [r.subscription_id for r in elsewhere] == ["all"]
    again = router.route([event()])
    assert [r.webhook_id for r in again] == [r.webhook_id for r in rows
                                             if r.event == "opened"], "same event, same ids"
    assert len({r.webhook_id for r in rows}) == len(rows)
    assert webhook_id("v", "updated", "s", 1.0) != webhook_id("v", "updated", "s", 2.0)


@pytest.mark.parametrize(("data", "words"), [
    ({"url": "ftp://x"}, "url must be http"),
    ({"secret": "nope"}, "starts with 'whsec_'"),
    ({"rules": ["SPEEDING"]}, "rules: unknown SPEEDING"),
    ({"min_severity": 5}, "min_severity must be 1, 2 or 3"),
    ({"events": ["deleted"]}, "events: unknown deleted"),
    ({"area": {"type": "Point", "coordinates": [1, 2]}}, "area must be a valid GeoJSON"),
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"secret_env": "MUCKWATCH_TEST_NO_SUCH_VAR", "secret": None}, "is not set"),
])
def test_bad_subscriptions_are_named(data, words):
    with pytest.raises(SubscriptionError, match=re.escape(words)):
        sub(**data)


def test_config_file_subscriptions_and_masking(tmp_path, monkeypatch):
    from domain.config import as_dict, to_toml

    monkeypatch.setenv("MY_HOOK_SECRET", SECRET)
    (tmp_path / "c.toml").write_text(f'''
[alerts]
retry_schedule_s = "0,1,2"

[[alerts.subscriptions]]
id = "city"
url = "https://hooks.example/muck"
secret = "{SECRET}"
rules = ["OFF_ROUTE"]

[[alerts.subscriptions]]
id = "district"
url = "https://district.example/muck"
secret_env = "MY_HOOK_SECRET"
''')
    s = load_settings(tmp_path / "c.toml", env={})
    assert [Subscription.from_config(t).id for t in s.alerts.subscriptions] == \
        ["city", "district"]
    assert Subscription.from_config(s.alerts.subscriptions[1]).secret == SECRET
    shown = to_toml(as_dict(s))
    assert SECRET not in shown and "[[alerts.subscriptions]]" in shown
    assert 'secret_env = "MY_HOOK_SECRET"' in shown
    with pytest.raises(ConfigError, match="array of tables"):
        load_settings(None, env={"MUCKWATCH_ALERTS_SUBSCRIPTIONS": "x"})

"""A database migrated without the CLI's [scoring] sync still scores every rule: the
migrations' score_deductions rows are the documented defaults, and every rule has them."""

from __future__ import annotations

import psycopg

from domain.events import RULES
from domain.settings import ScoringSettings
from store.scores import parse_deductions


def test_the_migrated_deductions_are_the_defaults_for_every_rule(fresh_database):
    with psycopg.connect(fresh_database()) as conn:
        rows = conn.execute("SELECT rule, severity, points FROM score_deductions").fetchall()
    migrated = {(rule, severity): float(points) for rule, severity, points in rows}
    defaults = {(rule, severity): points
                for rule, severity, points in parse_deductions(ScoringSettings().deductions)}
    assert migrated == defaults
    assert {rule for rule, _ in migrated} == set(RULES)

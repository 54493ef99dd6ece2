"""vbranch.domain.service_rules: a stored service -> the routing engine's rules (pure)."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import pytest

from vbranch.clock import FakeClock
from vbranch.config import load_settings
from vbranch.db.models import Service
from vbranch.domain.routing import RoutingEngine, RoutingError, ServiceRules
from vbranch.domain.service_rules import (
    QUEUE_SETTINGS,
    QueueDefaults,
    check_rules,
    effective_settings,
    rules_for,
)


def row(**kw) -> Service:
    base = dict(code="loan", name_zh="贷款", name_en="Loan", required_skills={"lending": 2},
                escalation=[{"after_s": 0, "min_proficiency": 3}, {"after_s": 60, "min_proficiency": 2}])
    return Service(**{**base, **kw})


def test_defaults_are_the_engines():
    engine = {f.name: f.default for f in fields(ServiceRules)}
    assert QueueDefaults().as_dict() == {name: engine[name] for name in QUEUE_SETTINGS}


def test_defaults_from_settings_take_what_the_settings_have(tmp_path):
    s = load_settings(data_dir=tmp_path, offer_timeout_s=7.0, wrapup_s=12.0)
    d = QueueDefaults.from_settings(s)
    assert (d.offer_timeout_s, d.wrapup_s) == (7.0, 12.0)
    assert (d.aging_points_per_min, d.decline_cooldown_s, d.service_level_threshold_s) == (1.0, 30.0, 20.0)
    # a settings object that has one of the others (e.g. a future VBRANCH_DECLINE_COOLDOWN_S) is used
    d = QueueDefaults.from_settings(SimpleNamespace(decline_cooldown_s=45.0, wrapup_s=None))
    assert (d.decline_cooldown_s, d.wrapup_s) == (45.0, 30.0)


def test_unset_settings_fall_back_to_the_defaults():
    defaults = QueueDefaults(offer_timeout_s=9.0, wrapup_s=4.0)
    rules = rules_for(row(), defaults)
    assert rules == {
        "code": "loan", "required_skills": {"lending": 2},
        "escalation": [{"after_s": 0, "min_proficiency": 3}, {"after_s": 60, "min_proficiency": 2}],
        "business_hours": None, "active": True, "aging_points_per_min": 1.0, "offer_timeout_s": 9.0,
        "wrapup_s": 4.0, "decline_cooldown_s": 30.0, "service_level_threshold_s": 20.0}


def test_the_services_own_settings_win_and_zero_is_a_value():
    svc = row(aging_points_per_min=0.0, offer_timeout_s=20.0, wrapup_s=0.0, decline_cooldown_s=0.0,
              service_level_threshold_s=45.0, active=False,
              business_hours={"timezone": "Asia/Shanghai", "days": [0, 1], "open": "09:00", "close": "17:00"})
    rules = rules_for(svc, QueueDefaults(offer_timeout_s=9.0, wrapup_s=4.0))
    assert {k: rules[k] for k in QUEUE_SETTINGS} == {
        "aging_points_per_min": 0.0, "offer_timeout_s": 20.0, "wrapup_s": 0.0, "decline_cooldown_s": 0.0,
        "service_level_threshold_s": 45.0}
    assert rules["active"] is False and rules["business_hours"]["days"] == [0, 1]
    assert effective_settings(svc) == {k: rules[k] for k in QUEUE_SETTINGS}


def test_a_mapping_works_like_a_row():
    data = {"code": "fx", "required_skills": {"fx": 3}, "escalation": [], "business_hours": {},
            "offer_timeout_s": 5, "name_zh": "外汇"}
    rules = rules_for(data)
    assert rules["offer_timeout_s"] == 5 and rules["business_hours"] is None and rules["active"] is True
    assert check_rules(data).offer_timeout_s == 5.0


def test_the_engine_runs_with_the_rules():
    e = RoutingEngine(FakeClock(), services=[rules_for(row(offer_timeout_s=4.0, active=False))])
    rules = e.services()["loan"]
    assert rules.offer_timeout_s == 4.0 and rules.active is False
    assert rules.escalation[1].after_s == 60


@pytest.mark.parametrize("bad", [
    {"escalation": [{"after_s": 60, "min_proficiency": 2}, {"after_s": 0, "min_proficiency": 3}]},
    {"business_hours": {"timezone": "Mars/Olympus"}},
    {"business_hours": {"timezone": "UTC", "close": "24:30"}},
    {"offer_timeout_s": 0.0},
    {"wrapup_s": -1.0},
])
def test_check_rules_refuses_what_the_engine_would(bad):
    with pytest.raises(RoutingError) as err:
        check_rules(row(**bad))
    assert err.value.code == "invalid_rules"

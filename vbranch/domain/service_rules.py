"""A service's stored configuration -> the routing engine's rules (pure, no I/O).

One place turns a service (a ``vbranch.db.models.Service`` row, a request body
dumped to a dict, or any object / mapping with the same names) into the rules
dict given to ``RoutingEngine.add_service``. The per-service queue settings
(``QUEUE_SETTINGS``) are nullable: None means "the global default", which comes
from the settings when they have it (``VBRANCH_OFFER_TIMEOUT_S``,
``VBRANCH_WRAPUP_S``) and otherwise from the engine's own defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from vbranch.domain.routing_model import ServiceRules

#: per-service queue settings, by their name in the database, the admin API and the engine
QUEUE_SETTINGS = ("aging_points_per_min", "offer_timeout_s", "wrapup_s", "decline_cooldown_s",
                  "service_level_threshold_s")

_ENGINE_DEFAULTS = {f.name: f.default for f in fields(ServiceRules)}


@dataclass(frozen=True)
class QueueDefaults:
    """What a service's queue setting is when the service leaves it empty (None)."""

    aging_points_per_min: float = _ENGINE_DEFAULTS["aging_points_per_min"]
    offer_timeout_s: float = _ENGINE_DEFAULTS["offer_timeout_s"]
    wrapup_s: float = _ENGINE_DEFAULTS["wrapup_s"]
    decline_cooldown_s: float = _ENGINE_DEFAULTS["decline_cooldown_s"]
    service_level_threshold_s: float = _ENGINE_DEFAULTS["service_level_threshold_s"]

    @classmethod
    def from_settings(cls, settings: Any) -> QueueDefaults:
        """The defaults the settings object has (e.g. ``offer_timeout_s``, ``wrapup_s``); the
        engine's defaults for the others."""
        found = {name: getattr(settings, name, None) for name in QUEUE_SETTINGS}
        return cls(**{k: v for k, v in found.items() if v is not None})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _get(service: Any, name: str, default: Any = None) -> Any:
    if isinstance(service, Mapping):
        return service.get(name, default)
    return getattr(service, name, default)


def rules_for(service: Any, defaults: QueueDefaults | None = None) -> dict[str, Any]:
    """The rules dict for ``RoutingEngine.add_service`` (``ServiceRules.from_dict``).

    ``service`` needs ``code``; ``required_skills``, ``escalation``, ``business_hours``
    ({} or None = always open), ``active`` (default True) and the ``QUEUE_SETTINGS``
    (None or absent = ``defaults``) are optional. Nothing is validated here:
    ``check_rules`` (or the engine) does that.
    """
    defaults = defaults or QueueDefaults()
    rules: dict[str, Any] = {
        "code": _get(service, "code"),
        "required_skills": dict(_get(service, "required_skills") or {}),
        "escalation": [dict(r) if isinstance(r, Mapping) else r for r in _get(service, "escalation") or ()],
        "business_hours": dict(_get(service, "business_hours") or {}) or None,
        "active": _get(service, "active", True),
    }
    for name in QUEUE_SETTINGS:
        value = _get(service, name)
        rules[name] = getattr(defaults, name) if value is None else value
    return rules


def effective_settings(service: Any, defaults: QueueDefaults | None = None) -> dict[str, Any]:
    """The queue settings the service runs with (its own where set, else the defaults)."""
    rules = rules_for(service, defaults)
    return {name: rules[name] for name in QUEUE_SETTINGS}


def check_rules(service: Any, defaults: QueueDefaults | None = None) -> ServiceRules:
    """The engine's rules for the service; ``RoutingError("invalid_rules", …)`` if the engine
    would refuse them (so a bad service is refused before it is stored)."""
    return ServiceRules.from_dict(rules_for(service, defaults))


__all__ = ["QUEUE_SETTINGS", "QueueDefaults", "check_rules", "effective_settings", "rules_for"]

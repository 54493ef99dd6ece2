"""Unit tests of the core pieces: settings, tokens, state machine, hash chain, rate limit, protocol parser."""

from __future__ import annotations

import pytest

from signaling.protocol import ProtocolError, parse_client_message
from signaling.ratelimit import TokenBucket
from vbranch.auth import AuthError, TokenService, hash_password, verify_password
from vbranch.clock import FakeClock
from vbranch.config import ConfigError, load_settings
from vbranch.domain.evidence import GENESIS, chain_hash, verify_chain
from vbranch.domain.roles import Role
from vbranch.domain.session_state import IllegalTransition, SessionState, transition


@pytest.mark.parametrize("name, value, needle", [
    ("VBRANCH_PORT", "eighty", "VBRANCH_PORT"),
    ("VBRANCH_PORT", "70000", "VBRANCH_PORT"),
    ("VBRANCH_ICE_SERVERS", "stun:nope", "VBRANCH_ICE_SERVERS"),
    ("VBRANCH_API_KEYS", "short", "VBRANCH_API_KEYS"),
    ("VBRANCH_FACECHECK_THRESHOLD", "2", "VBRANCH_FACECHECK_THRESHOLD"),
    ("VBRANCH_LOG_LEVEL", "loud", "VBRANCH_LOG_LEVEL"),
    ("VBRANCH_DATABSE_URL", "sqlite://", "VBRANCH_DATABSE_URL"),
])
def test_invalid_setting_names_the_variable(monkeypatch, name, value, needle):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=needle):
        load_settings()


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VBRANCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VBRANCH_API_KEYS", "k" * 20 + "," + "j" * 20)
    monkeypatch.setenv("VBRANCH_ICE_SERVERS", '[{"urls": ["turn:turn.example:3478"], "username": "u", '
                                               '"credential": "p"}]')
    s = load_settings()
    assert s.api_keys == ["k" * 20, "j" * 20]
    assert s.ice_servers[0].username == "u"
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'vbranch.db').resolve()}"
    assert s.resolved_recordings_dir == tmp_path / "recordings"
    key = s.resolved_secret_key()
    assert key == s.resolved_secret_key() and len(key) > 40  # made once, then kept
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


def test_cli_reports_configuration_errors(monkeypatch, capsys):
    from vbranch.cli import main

    monkeypatch.setenv("VBRANCH_PORT", "nope")
    assert main(["migrate"]) == 2
    assert "VBRANCH_PORT" in capsys.readouterr().err


def test_passwords():
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse") and not verify_password(h, "wrong")
    assert not verify_password("not-a-hash", "x")


def test_tokens_expire_on_the_injected_clock():
    clock = FakeClock()
    tokens = TokenService("s" * 40, clock, staff_ttl_s=60, join_ttl_s=30)
    staff, _ = tokens.issue_staff(7, "agent7", Role.AGENT)
    join, _ = tokens.issue_join("abc")
    assert tokens.decode_staff(staff).account_id == 7
    assert tokens.decode_join(join).session_id == "abc"
    with pytest.raises(AuthError) as e:
        tokens.decode_staff(join)
    assert e.value.code == "invalid_token"
    clock.advance(31)
    with pytest.raises(AuthError) as e:
        tokens.decode_join(join)
    assert e.value.code == "token_expired"
    assert tokens.decode_staff(staff).username == "agent7"
    clock.advance(30)
    with pytest.raises(AuthError):
        tokens.decode_staff(staff)


def test_state_machine():
    assert transition("queued", "offered") == SessionState.OFFERED
    assert transition("offered", "queued") == SessionState.QUEUED
    for cur, tgt in [("queued", "connected"), ("completed", "queued"), ("abandoned", "offered"),
                     ("wrap_up", "connected")]:
        with pytest.raises(IllegalTransition):
            transition(cur, tgt)


def test_hash_chain_finds_edits():
    records = [{"n": i, "text": f"event {i}"} for i in range(5)]
    links, prev = [], GENESIS
    for r in records:
        h = chain_hash(prev, r)
        links.append((r, prev, h))
        prev = h
    assert verify_chain(links) == []
    edited = list(links)
    edited[2] = ({**records[2], "text": "changed"}, links[2][1], links[2][2])
    assert verify_chain(edited) == [2]
    assert verify_chain(links[:2] + links[3:]) == [2]  # a deleted row breaks the next link


def test_token_bucket():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2, burst=3, clock=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)
    assert bucket.allow() and not bucket.allow()


@pytest.mark.parametrize("raw, code", [
    ("text", "invalid_message"),
    ({"no": "type"}, "invalid_message"),
    ({"type": 5}, "unknown_type"),
    ({"type": "offer.accept"}, "missing_field"),
    ({"type": "offer.accept", "session_id": 12}, "invalid_field"),
    ({"type": "hello", "extra": True}, "invalid_field"),
    ({"type": "consent", "recording": True, "face": True, "location": {"lat": 100, "lon": 0}}, "invalid_field"),
])
def test_protocol_parser_errors(raw, code):
    with pytest.raises(ProtocolError) as e:
        parse_client_message(raw)
    assert e.value.code == code

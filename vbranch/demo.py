"""Demo data for `vbranch serve --demo`: services, skills, staff accounts and an API key.

The services' checklists come from vbranch/calls/checklists.toml.

Seeding is idempotent: existing rows are left as they are.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from vbranch.auth import hash_api_key, hash_password
from vbranch.db.models import AgentSkill, ApiKey, Service, Skill, StaffAccount
from vbranch.db.repositories import Accounts, ApiKeys, Catalog
from vbranch.runtime import Runtime

DEMO_PASSWORD = "demo"

SKILLS = [
    ("lending", "贷款业务", "Lending"),
    ("signing", "面签", "Contract signing"),
    ("wealth", "财富管理", "Wealth management"),
    ("accounts", "开户", "Account services"),
    ("private_banking", "私人银行", "Private banking"),
]

WORKDAY = {"timezone": "Asia/Shanghai", "days": [0, 1, 2, 3, 4, 5, 6], "open": "00:00", "close": "24:00"}


SERVICES = [
    Service(code="loan_prescreen", name_zh="贷款预审", name_en="Loan pre-screening",
            required_skills={"lending": 2},
            escalation=[{"after_s": 0, "min_proficiency": 3}, {"after_s": 60, "min_proficiency": 2}],
            retention_days=1825),
    Service(code="f2f_signing", name_zh="面对面签约", name_en="Face-to-face signing",
            required_skills={"lending": 3, "signing": 3},
            escalation=[{"after_s": 0, "min_proficiency": 4}, {"after_s": 60, "min_proficiency": 3}],
            retention_days=3650),
    Service(code="risk_assessment", name_zh="风险承受能力评估", name_en="Risk-tolerance assessment",
            required_skills={"wealth": 2},
            retention_days=3650),
    Service(code="account_opening", name_zh="开户", name_en="Account opening",
            required_skills={"accounts": 1},
            retention_days=1825),
    Service(code="private_banking", name_zh="私人银行服务", name_en="Private banking",
            required_skills={"private_banking": 4, "wealth": 3},
            business_hours=WORKDAY, retention_days=3650),
]

ACCOUNTS = [
    ("agent1", "坐席一号 Agent One", "agent", {"lending": 4, "signing": 4, "accounts": 3}),
    ("agent2", "坐席二号 Agent Two", "agent", {"wealth": 4, "accounts": 4, "lending": 2}),
    ("agent3", "坐席三号 Agent Three", "agent", {"private_banking": 5, "wealth": 5, "lending": 3, "signing": 3,
                                                "accounts": 2}),
    ("supervisor", "值班主管 Supervisor", "supervisor", {}),
    ("reviewer", "质检员 Reviewer", "reviewer", {}),
    ("admin", "管理员 Admin", "admin", {}),
]


@dataclass
class DemoInfo:
    api_key: str
    usernames: list[str]


def demo_api_key(secret: str) -> str:
    """Stable across restarts of one data folder, so it can be printed each time."""
    return "vbk_demo_" + hmac.new(secret.encode(), b"demo-api-key", hashlib.sha256).hexdigest()[:32]


async def seed_demo(rt: Runtime) -> DemoInfo:
    now = rt.clock.now()
    async with rt.db.session() as db:
        catalog = Catalog(db)
        have = await catalog.skill_codes()
        for code, zh, en in SKILLS:
            if code not in have:
                db.add(Skill(code=code, name_zh=zh, name_en=en))
        await db.flush()
        for svc in SERVICES:
            if await catalog.service(svc.code) is None:
                db.add(Service.model_validate(svc.model_dump()))
        await db.flush()
        accounts = Accounts(db)
        for username, name, role, skills in ACCOUNTS:
            if await accounts.by_username(username) is None:
                account = StaffAccount(username=username, display_name=name, role=role,
                                       password_hash=hash_password(DEMO_PASSWORD), created_at=now)
                db.add(account)
                await db.flush()
                for code, level in skills.items():
                    db.add(AgentSkill(account_id=account.id, skill_code=code, proficiency=level))
        key = demo_api_key(rt.settings.resolved_secret_key())
        if await ApiKeys(db).active_by_hash(hash_api_key(key)) is None:
            db.add(ApiKey(name="demo bank backend", key_hash=hash_api_key(key), created_at=now))
        await db.commit()
    return DemoInfo(api_key=key, usernames=[a[0] for a in ACCOUNTS])

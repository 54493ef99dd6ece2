"""The `vbranch` command line: serve, migrate, create-account."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import sys
import threading

from vbranch.config import ConfigError, Settings, load_settings
from vbranch.startup import StartupError, check_adapters


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)))
                 if v is not None}
    if getattr(args, "demo", False):
        overrides["demo"] = True
    return load_settings(**overrides)


def _banner(settings: Settings, app) -> str:
    base = settings.public_base_url
    lines = [f"vbranch serving on http://{settings.host}:{settings.port}",
             f"  data folder     {settings.data_dir.resolve()}",
             f"  database        {settings.resolved_database_url}",
             f"  API docs        {base}/docs"]
    demo = app.state.demo
    if demo is not None:
        lines += ["", "Demo mode: sample services and accounts (password 'demo'); do not use in production.",
                  f"  customer page   {base}/customer/   (creates a demo session; a bank's join_url opens it too)",
                  f"  agent console   {base}/agent        accounts: agent1, agent2, agent3",
                  f"  wallboard       {base}/wallboard    account: supervisor",
                  f"  reviewer        {base}/review       account: reviewer",
                  f"  admin API       {base}/docs         account: admin",
                  f"  bank API key    {demo.api_key}",
                  f"  create a session: curl -X POST {base}/api/v1/sessions -H 'X-Api-Key: {demo.api_key}' "
                  "-H 'Content-Type: application/json' "
                  "-d '{\"service\":\"loan_prescreen\",\"channel\":\"h5\",\"customer\":{\"ref\":\"C1\",\"name\":\"Li Lei\"}}'"]
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vbranch.app import create_app

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    asyncio.run(check_adapters(settings))  # a missing piece: one line and exit 2, before uvicorn starts
    app = create_app(settings)

    class BannerServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            # what start-up built lives as long as the process: out of the collector's sight, so a full
            # collection walks only what calls create (it took 0.2-0.3 s, about once a second at load);
            # young objects are collected less often, so fewer short-lived ones reach the old generation
            gc.freeze()
            gc.set_threshold(50_000, 20, 10)
            if not self.should_exit:
                print(_banner(settings, app), flush=True)

        def handle_exit(self, sig, frame) -> None:
            branch = app.state.branch
            if settings.drain_s <= 0 or branch.draining:  # no drain, or a second signal: stop now
                super().handle_exit(sig, frame)
                return
            branch.draining = True  # /healthz and new sessions say so; calls and the queue go on
            logging.getLogger("vbranch").warning("draining for %.0f s before stopping", settings.drain_s)
            threading.Timer(settings.drain_s, super().handle_exit, (sig, None)).start()

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            ws_max_size=settings.ws_max_frame_bytes, ws_ping_interval=settings.heartbeat_interval_s,
                            ws_per_message_deflate=False,  # small JSON: compressing costs more CPU than it saves
                            ws_ping_timeout=settings.heartbeat_interval_s, lifespan="on",
                            # SIGTERM: stop listening, close every socket with 1012 (clients come back and
                            # resume), wait this long for requests under way, then finalise recordings and
                            # flush the evidence journal (the app's shutdown)
                            timeout_graceful_shutdown=10)
    BannerServer(config).run()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from vbranch.bootstrap import build_database

    settings = _settings(args)
    db = build_database(settings)
    asyncio.run(db.migrate())
    print(f"database at {settings.resolved_database_url} is up to date")
    return 0


def cmd_create_account(args: argparse.Namespace) -> int:
    from vbranch.auth import hash_password
    from vbranch.db.models import StaffAccount
    from vbranch.db.repositories import Accounts

    if not sys.stdin.isatty():  # never from an argument or the environment: stdin or a prompt
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    if len(password) < 8:
        print("error: the password must be at least 8 characters", file=sys.stderr)
        return 2
    rt = _offline_runtime(args)

    async def run() -> int:
        await rt.db.migrate()
        async with rt.db.session() as db:
            if await Accounts(db).by_username(args.username):
                print(f"error: username {args.username!r} is taken", file=sys.stderr)
                return 1
            db.add(StaffAccount(username=args.username, display_name=args.display_name or args.username,
                                role=args.role, password_hash=hash_password(password), created_at=rt.clock.now()))
            await db.commit()
            await rt.journal.audit("cli", "admin.account_create", None,
                                   {"account": args.username, "role": args.role})
        await rt.journal.close()
        await rt.db.close()
        print(f"created {args.role} {args.username}")
        return 0

    return asyncio.run(run())


def _offline_runtime(args: argparse.Namespace):
    """A runtime for maintenance commands (no server, same database and data folder)."""
    from vbranch.bootstrap import build_runtime

    return build_runtime(_settings(args))


def cmd_verify(args: argparse.Namespace) -> int:
    from vbranch.evidence.manifests import verify

    rt = _offline_runtime(args)

    async def run():
        await rt.db.migrate()
        try:
            return await verify(rt, rt.signing_key, args.session_id)
        finally:
            await rt.journal.close()
            await rt.db.close()

    report = asyncio.run(run())
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"MISMATCH: {problem}")
    verdict = "FAILED" if report.problems else "OK"
    print(f"{verdict}: {report.checked_sessions} session(s) checked, audit chain checked, "
          f"{len(report.problems)} problem(s)")
    return 1 if report.problems else 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vbranch.evidence.export import ExportError, export_session

    rt = _offline_runtime(args)

    async def run():
        try:
            return await export_session(rt, args.session_id, Path(args.out))
        finally:
            await rt.journal.close()
            await rt.db.close()

    try:
        path = asyncio.run(run())
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from vbranch.evidence.retention import purge_expired

    rt = _offline_runtime(args)

    async def run():
        await rt.db.migrate()
        try:
            return await purge_expired(rt, dry_run=args.dry_run)
        finally:
            await rt.journal.close()
            await rt.db.close()

    purges = asyncio.run(run())
    for p in purges:
        what = "kept (legal hold)" if p.reason == "held" else ("would purge" if args.dry_run else "purged")
        print(f"{what}: {p.session_id} {p.party} {p.storage_key}")
    print(f"{sum(p.reason == 'expired' for p in purges)} expired recording(s), "
          f"{sum(p.reason == 'held' for p in purges)} under legal hold")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vbranch", description="Open virtual bank branch")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (SQLite and a local recordings folder by default)")
    serve.add_argument("--demo", action="store_true", help="seed demo services, accounts and an API key")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(func=cmd_migrate)
    create = sub.add_parser("create-account", help="create a staff account (password read from stdin or a prompt)")
    create.add_argument("username")
    create.add_argument("--role", choices=["agent", "supervisor", "reviewer", "admin"], default="admin")
    create.add_argument("--display-name")
    create.set_defaults(func=cmd_create_account)
    verify = sub.add_parser("verify", help="check recordings, timelines, the audit chain and signatures")
    verify.add_argument("session_id", nargs="?", help="one session (default: all)")
    verify.set_defaults(func=cmd_verify)
    export = sub.add_parser("export", help="write a session's evidence archive (zip)")
    export.add_argument("session_id")
    export.add_argument("--out", default=".", help="a folder or a .zip path (default: here)")
    export.set_defaults(func=cmd_export)
    purge = sub.add_parser("purge", help="delete recordings past their service's retention (never under hold)")
    purge.add_argument("--dry-run", action="store_true")
    purge.set_defaults(func=cmd_purge)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except StartupError as exc:
        print(f"vbranch: cannot start: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"vbranch: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

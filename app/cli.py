"""The `telltale` command: serve, check, config, exporter.

Exit codes: 0 ok/healthy, 1 degraded, 2 unhealthy or invalid settings (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from telltale.config.settings import Settings, SettingsError, load_settings
from telltale.config.unknown import unknown_variables_warning

EXIT = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def _say(message: str) -> None:
    """One line on stderr, whatever the message holds, always ending with a newline."""
    sys.stderr.write("telltale: " + " ".join(str(message).split()) + "\n")
    sys.stderr.flush()


def _fail(message: str) -> int:
    _say(message)
    return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telltale", description="Monitoring and alerting for a web platform.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the health, metrics and events API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-format", choices=["json", "console"])
    check = sub.add_parser("check", help="run the checks once; exit 0 healthy, 1 degraded, 2 unhealthy")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--tag", help="only checks with this tag (live, ready)")
    cfg = sub.add_parser("config", help="print the effective settings, secrets redacted")
    cfg.add_argument("--check", metavar="FILE", help="validate a settings file; exit 0 or 2")
    exp = sub.add_parser("exporter", help="serve the exporter sidecar's /metrics")
    exp.add_argument("--host")
    exp.add_argument("--port", type=int)
    return p


def _warn(settings: Settings, warning: str, as_log_line: bool) -> None:
    """The long-running commands write JSON lines (TELLTALE_LOG_FORMAT): their warning is one of them."""
    if not as_log_line:
        _say(warning)
        return
    import logging

    from telltale.config.log_format import configure_logging

    configure_logging(settings.log_format, settings.log_level, settings.secrets())
    logging.getLogger("telltale.settings").warning(" ".join(warning.removeprefix("warning: ").split()))


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # a typo'd variable is a warning, not an error; on invalid settings it joins the one error line
    warning = unknown_variables_warning()
    try:
        if args.command == "config" and args.check:
            load_settings(config_file=args.check)
            if warning:
                _say(warning)
            print(f"{args.check}: valid")
            return 0
        overrides: dict[str, Any] = {}
        if args.command == "serve":
            overrides = {"host": args.host, "port": args.port, "log_format": args.log_format}
        settings = load_settings(**overrides)
    except SettingsError as exc:
        return _fail(f"{exc}; {warning}" if warning else str(exc))
    if warning:
        _warn(settings, warning, as_log_line=args.command in ("serve", "exporter"))
    if args.command == "serve":
        return _serve(settings, args.workers)
    if args.command == "check":
        return asyncio.run(_check(settings, args.json, args.tag))
    if args.command == "config":
        import yaml

        print(yaml.safe_dump(settings.redacted(), sort_keys=True), end="")
        return 0
    if args.command == "exporter":
        return _exporter(settings, args.host, args.port)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _serve(settings: Settings, workers: int) -> int:
    import uvicorn
    from telltale.app.instrumentation.logs import configure_logging

    if workers < 1:
        return _fail("--workers: must be at least 1")
    configure_logging(settings.log_format, settings.log_level, settings.secrets())
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    import os

    from telltale.app.instrumentation import multiprocess as mp

    metrics_dir = None
    if workers > 1 or os.environ.get(mp.ENV):  # one worker with the variable set is multiprocess mode too
        try:
            metrics_dir = mp.prepare_multiprocess_dir()
        except mp.MultiprocessDirError as exc:
            return _fail(str(exc))
    try:
        if workers == 1:
            from telltale.app.main import create_app

            uvicorn.run(create_app(settings), **common)
        else:
            passed = {"host": settings.host, "port": settings.port, "log_format": settings.log_format}
            os.environ.update({f"TELLTALE_{k.upper()}": str(v) for k, v in passed.items()})
            uvicorn.run("telltale.app.main:app_from_env", factory=True, workers=workers, **common)
    finally:
        if metrics_dir is not None:
            mp.cleanup_multiprocess_dir(metrics_dir)
    return 0


async def _check(settings: Settings, as_json: bool, tag: str | None) -> int:
    from telltale.checks.registry import LIVE, READY, build_checks
    from telltale.checks.runner import CheckRunner

    runner = CheckRunner(
        build_checks(settings), cache_ttl=0, deadline=settings.health_deadline_seconds, secrets=settings.secrets()
    )
    try:
        names = runner.select(tag)
        # `live` and `ready` are always valid (an empty set is healthy, as /health/ready is); others need a check
        tags = {LIVE, READY} | {t for c in runner.checks.values() for t in c.tags}
        if tag is not None and tag not in tags:
            return _fail(f"--tag {tag}: no check has that tag (tags: {', '.join(sorted(tags))})")
        report = await runner.run(names, fresh=True)
    finally:
        await runner.close()
    now = time.time()
    if as_json:
        print(
            json.dumps(
                {"status": report.status.value, "checks": {n: r.to_dict(now) for n, r in report.results.items()}},
                indent=2,
            )
        )
    else:
        rows = [("CHECK", "STATUS", "LATENCY", "MESSAGE")] + [
            (n, r.status.value, f"{r.latency_seconds * 1000:.1f} ms", r.message) for n, r in report.results.items()
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
        print(f"\noverall: {report.status.value}")
    return EXIT[report.status.value]


def _exporter(settings: Settings, host: str | None, port: int | None) -> int:
    try:
        from telltale.exporter.main import run_exporter
    except ImportError:
        return _fail("the exporter is not available in this build")
    try:
        run_exporter(settings, host=host, port=port)
    except SettingsError as exc:
        return _fail(str(exc))
    return 0


if __name__ == "__main__":
    main()

"""The ``shaper`` command. Errors a user can fix end in one clear line and a non-zero exit,
never in a traceback."""

from __future__ import annotations

import argparse
import os
import sys

from shaper_pipelines.cli import agent as agent_cli
from shaper_pipelines.cli import api as api_cli
from shaper_pipelines.cli import events as events_cli
from shaper_pipelines.cli import forecasting as forecasting_cli
from shaper_pipelines.cli import history as history_cli
from shaper_pipelines.cli import profiles as profiles_cli
from shaper_pipelines.cli import scaling as scaling_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shaper",
        description="Predictive resource shaping: learn the coming load, rehearse it, scale before it arrives.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the main job end to end on the configured (default: embedded) setup")
    run.set_defaults(func=_run)

    ui = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on this project")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=_ui)

    profiles_cli.add_parser(sub)
    history_cli.add_parser(sub)
    agent_cli.add_parser(sub)
    agent_cli.add_worker_parser(sub)
    events_cli.add_parser(sub)
    forecasting_cli.add_parsers(sub)
    api_cli.add_parser(sub)
    scaling_cli.add_parser(sub)
    return parser


def _run(args) -> int:
    from shaper_pipelines.main_job import run_main_job

    return 0 if run_main_job() else 1


def _ui(args) -> int:
    from shaper_pipelines.settings import dagster_env, project_root

    env = dagster_env()
    print(f"DAGSTER_HOME={env['DAGSTER_HOME']}; opening http://{args.host}:{args.port}", file=sys.stderr)
    os.chdir(project_root())
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    os.execve(dagster, [dagster, "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)], env)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        # Every error of shaper's that a user can fix (ProfileError, ExpressionError, HistoryError,
        # ForecastError, PlanError) is a ValueError: one line, exit 2.
        print(f"shaper: error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        # ProfileNotFound, looked up only if its module was imported (it must have been, to be
        # raised): importing the store (SQLAlchemy) just to name it slowed every command.
        store = sys.modules.get("shaper_pipelines.store.profile_store")
        if store is None or not isinstance(exc, store.ProfileNotFound):
            raise
        print(f"shaper: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130

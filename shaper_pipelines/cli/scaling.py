"""``shaper scaling mode``: the operators' switches for scaling - dry run and pause - which every
real apply checks first. The control API's PUT /v1/scaling/mode sets the same switches."""

from __future__ import annotations

import argparse
import getpass


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scaling", help="scaling switches: dry run and pause")
    p.add_argument("--db", help="database URL (default: SHAPER_DATABASE_URL, else SQLite under .shaper/)")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    m = ps.add_parser("mode", help="show, or change, whether applies are dry runs and whether scaling is paused")
    m.add_argument("--dry-run", choices=["on", "off"], help="on: applies only record what they would do")
    pause = m.add_mutually_exclusive_group()
    pause.add_argument("--pause", action="store_true", help="refuse every real apply until resumed")
    pause.add_argument("--resume", action="store_true")
    m.add_argument("--note", default="", help="why, for the record")
    m.set_defaults(func=_mode)


def _mode(args) -> int:
    from shaper_pipelines.settings import database_url, normalise_url
    from shaper_pipelines.store.control_store import ControlStore

    with ControlStore(normalise_url(args.db) if args.db else database_url()) as control:
        mode = control.scaling_mode()
        if args.dry_run or args.pause or args.resume:
            mode = control.set_scaling_mode(
                dry_run=mode.dry_run if args.dry_run is None else args.dry_run == "on",
                paused=True if args.pause else False if args.resume else mode.paused,
                actor=f"{getpass.getuser()} (shaper cli)", note=args.note)
    since = f" since {mode.changed_at:%Y-%m-%d %H:%M} UTC by {mode.changed_by}" if mode.changed_at else " (default)"
    print(f"dry run: {'on' if mode.dry_run else 'off'}; paused: {'yes' if mode.paused else 'no'}{since}"
          + (f" - {mode.note}" if mode.note and mode.changed_at else ""))
    return 0

"""``shaper events emit NAME``: put an external event on the feed the event sensor reads."""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timezone


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="the external event feed (releases, campaigns) that triggers rehearsals")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = ps.add_parser("emit", help="append an event to the feed")
    e.add_argument("name")
    e.set_defaults(func=_emit)


def _emit(args) -> int:
    from shaper_pipelines.defs.simulation.sensors import event_feed_path

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", args.name):
        raise ValueError(f"event name {args.name[:60]!r} must be letters, digits and _.:- (at most 128)")
    path = event_feed_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"event": args.name, "at": datetime.now(timezone.utc).isoformat()})
    with open(path, "a") as f:
        f.write(line + "\n")
    print(f"emitted {args.name} to {path}")
    return 0

"""``shaper history ...``: bring metric history into the shaper database from CSV files."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="metric history: import CSV files, list what is stored")
    p.add_argument("--db", help="database URL (default: SHAPER_DATABASE_URL, else SQLite under .shaper/)")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    im = ps.add_parser("import", help="import a timestamp,value or ts,value CSV (a CloudWatch export, a trace)")
    im.add_argument("file", type=Path)
    im.add_argument("--target", required=True, help="what the metric belongs to, e.g. checkout-api")
    im.add_argument("--metric", required=True, help="e.g. cpu, memory, network_io, disk_io, requests")
    im.add_argument("--step", default=None, help="resample to this step (default: the file's own, e.g. 5m)")
    im.set_defaults(func=_import)

    ls = ps.add_parser("list", help="stored series with their spans")
    ls.set_defaults(func=_list)


def _store(args):
    from shaper_pipelines.settings import database_url, normalise_url
    from shaper_pipelines.store.metric_store import MetricStore

    return MetricStore(normalise_url(args.db) if args.db else database_url())


def _import(args) -> int:
    import pandas as pd

    from shaper_pipelines.lib.durations import parse_duration
    from shaper_pipelines.lib.history import load_history

    for name, value in (("target", args.target), ("metric", args.metric)):
        if not _NAME.match(value):
            raise ValueError(f"--{name} {value[:60]!r} must be letters, digits and _.:- (at most 128)")
    series, report = load_history(args.file, parse_duration(args.step) if args.step else None)
    step = pd.Timedelta(seconds=report.step_seconds)
    with _store(args) as store:
        rows = store.replace_window(args.target, args.metric, series.index[0], series.index[-1] + step, series,
                                    filled=report.filled, origin="import")
    print(f"imported {rows:,} points of {args.target}/{args.metric} at {report.step_seconds:g}s, "
          f"{series.index[0]:%Y-%m-%d %H:%M} .. {series.index[-1]:%Y-%m-%d %H:%M} UTC ({report.summary()})")
    return 0


def _list(args) -> int:
    with _store(args) as store:
        rows = store.series()
    print(f"{'TARGET':<30} {'METRIC':<12} {'POINTS':>8}  FIRST             LAST")
    for r in rows:
        print(f"{r.target:<30} {r.metric:<12} {r.points:>8}  {r.first:%Y-%m-%d %H:%M}  {r.last:%Y-%m-%d %H:%M}")
    print(f"({len(rows)} series)", file=sys.stderr)
    return 0

"""``shaper profiles ...``: validate, list, show, render, import and export load profiles."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from shaper_pipelines.cli.output import write_output

# The profile library (pandas, numpy, the YAML and expression machinery) is imported inside the
# commands that use it: every `shaper` command builds this parser, and importing it here cost each
# of them, `--help` included, about a second.

# Points `profiles render` makes at most: a week at 1 s is 604,800, a year at 1 min 525,600. The
# library's own bound (what an agent may follow) is far larger; as a CSV and a plot, 50 million
# points are gigabytes nobody reads.
MAX_CLI_RENDER_POINTS = 2_000_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="synthetic load profiles: validate, list, show, render, import, export")
    p.add_argument("--db", help="profile store URL (default: SHAPER_DATABASE_URL, else SQLite under .shaper/)")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    v = ps.add_parser("validate", help="check profile files without storing anything")
    v.add_argument("paths", nargs="+", help="YAML/JSON files or folders")
    v.set_defaults(func=_validate)

    ls = ps.add_parser("list", help="stored profiles (newest version of each)")
    ls.add_argument("--resource-type", choices=["cpu", "memory", "network_io", "disk_io"])
    ls.add_argument("--source")
    ls.add_argument("--min-priority", type=int)
    ls.add_argument("--trigger-kind", choices=["cron", "event", "metric"])
    ls.add_argument("--all-versions", action="store_true")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)

    sh = ps.add_parser("show", help="one stored profile as YAML")
    sh.add_argument("profile_id")
    sh.add_argument("--version", type=int)
    sh.set_defaults(func=_show)

    r = ps.add_parser("render", help="target intensity over time, as CSV and/or a PNG plot")
    r.add_argument("profile", help="a stored profile id, or a profile file")
    r.add_argument("--version", type=int)
    r.add_argument("--start", default=None, help="ISO time or epoch seconds (default: today 00:00 UTC)")
    r.add_argument("--step", default="60s", help="resolution, e.g. 1s, 60s, 5m (default 60s)")
    r.add_argument("--duration", default=None, help="override the profile's duration")
    r.add_argument("--csv", type=Path, help="write timestamp,value here ('-' for stdout)")
    r.add_argument("--png", type=Path, help="draw a plot here")
    r.set_defaults(func=_render)

    im = ps.add_parser("import", help="validate and store profile files (all or nothing)")
    im.add_argument("paths", nargs="+")
    im.add_argument("--actor", help="recorded as who stored them (default user@host)")
    im.set_defaults(func=_import)

    ex = ps.add_parser("export", help="stored profiles as YAML")
    ex.add_argument("profile_ids", nargs="*", help="default: all")
    ex.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    ex.set_defaults(func=_export)


def _store(args):
    from shaper_pipelines.settings import database_url, normalise_url
    from shaper_pipelines.store.profile_store import ProfileStore

    return ProfileStore(normalise_url(args.db) if args.db else database_url())


def _validate(args) -> int:
    from shaper_pipelines.lib.durations import format_duration
    from shaper_pipelines.store.loading import validate_paths

    # Each file's profiles are rendered whole at the 1 s step an agent follows
    # (lib.profile.load_profiles_file), so what would fail mid-run is refused here.
    files, profiles = validate_paths(args.paths)
    for p in profiles:
        print(f"ok  {p.profile_id:<34} {p.resource_type.value:<10} {p.load_pattern.kind:<11} "
              f"{format_duration(p.duration):>7}  v#{p.content_hash}")
    print(f"{len(profiles)} profile(s) in {len(files)} file(s) are valid")
    return 0


def _list(args) -> int:
    with _store(args) as store:
        rows = store.list(resource_type=args.resource_type, source=args.source, min_priority=args.min_priority,
                          trigger_kind=args.trigger_kind, latest_only=not args.all_versions)
    if args.json:
        print(json.dumps([{"profile_id": s.profile_id, "version": s.version, "content_hash": s.content_hash,
                           "resource_type": s.profile.resource_type.value, "source": s.profile.source.value,
                           "priority": s.profile.priority, "triggers": s.profile.trigger_kinds,
                           "created_at": s.created_at.isoformat(), "created_by": s.created_by} for s in rows], indent=2))
        return 0
    width = max([len(s.profile_id) for s in rows] + [7])
    print(f"{'PROFILE':<{width}} {'VER':>3} {'RESOURCE':<10} {'SOURCE':<14} {'PRIO':>4} {'PATTERN':<11} TRIGGERS")
    for s in rows:
        p = s.profile
        print(f"{p.profile_id:<{width}} {s.version:>3} {p.resource_type.value:<10} {p.source.value:<14} {p.priority:>4} "
              f"{p.load_pattern.kind:<11} {','.join(p.trigger_kinds) or '-'}")
    print(f"({len(rows)} profile(s))", file=sys.stderr)
    return 0


def _show(args) -> int:
    from shaper_pipelines.lib.profile import dump_profiles_yaml

    with _store(args) as store:
        s = store.get(args.profile_id, args.version)
    print(f"# version {s.version} ({s.content_hash}), stored {s.created_at:%Y-%m-%d %H:%M:%S} UTC by {s.created_by}")
    print(dump_profiles_yaml([s.profile]), end="")
    return 0


def _render(args) -> int:
    from shaper_pipelines.lib.durations import format_duration, parse_duration
    from shaper_pipelines.lib.profile import load_profiles_file, render
    from shaper_pipelines.lib.timegrid import to_epoch_seconds

    source = Path(args.profile)
    if source.suffix in (".yaml", ".yml", ".json") and source.exists():
        profiles = load_profiles_file(source)
        if len(profiles) > 1:
            print(f"note: {source} holds {len(profiles)} profiles; rendering the first, {profiles[0].profile_id}",
                  file=sys.stderr)
        profile = profiles[0]
    else:
        with _store(args) as store:
            profile = store.get(args.profile, args.version).profile
    if args.start is None:
        import time

        start = float(int(time.time()) // 86400 * 86400)
    else:
        start = to_epoch_seconds(float(args.start) if args.start.replace(".", "", 1).isdigit() else args.start)
    step = parse_duration(args.step)
    duration = parse_duration(args.duration) if args.duration else None
    rendered = render(profile, start=start, step=step, duration=duration, max_points=MAX_CLI_RENDER_POINTS)
    if args.csv:
        frame = rendered.to_frame()
        frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        write_output(frame.to_csv(index=False, quoting=csv.QUOTE_MINIMAL), args.csv)
    if args.png:
        from shaper_pipelines.lib.plots import profile_plot_png

        args.png.write_bytes(profile_plot_png(
            [(f"{profile.profile_id} ({profile.resource_type.value}, {profile.load_pattern.kind})",
              rendered.timestamps, rendered.values, profile.unit)]))
    v = rendered.values
    print(f"{profile.profile_id}: {len(v):,} points every {format_duration(step)}; min {v.min():.4g}, "
          f"mean {v.mean():.4g}, max {v.max():.4g} {profile.unit}", file=sys.stderr)
    return 0


def _import(args) -> int:
    from shaper_pipelines.store.loading import load_into_store

    with _store(args) as store:
        report = load_into_store(args.paths, store, created_by=args.actor)
    for r in report.results:
        print(f"{'new' if r.created else 'same':<4} {r.profile_id:<34} version {r.version} ({r.content_hash})")
    print(f"stored {len(report.created)} new version(s) of {len(report.results)} profile(s) from {len(report.files)} file(s)")
    return 0


def _export(args) -> int:
    from shaper_pipelines.lib.profile import dump_profiles_yaml

    with _store(args) as store:
        if args.profile_ids:
            profiles = [store.get(pid).profile for pid in args.profile_ids]
        else:
            profiles = [s.profile for s in store.list()]
    text = dump_profiles_yaml(profiles)
    if args.output and str(args.output) != "-":
        write_output(text, args.output)
        print(f"wrote {len(profiles)} profile(s) to {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0

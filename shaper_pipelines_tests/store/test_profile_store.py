"""The profile store against real databases: a SQLite file and a throwaway PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import sqlalchemy as sa

from shaper_pipelines.lib.profile import ProfileError, parse_profile, render
from shaper_pipelines.store.loading import load_into_store
from shaper_pipelines.store.profile_store import ProfileNotFound, ProfileStore
from shaper_pipelines.store.schema import metadata

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC


def make(pid: str = "web-cpu", level: float = 0.5, **fields):
    data = {"profile_id": pid, "resource_type": "cpu", "duration": "1h",
            "load_pattern": {"kind": "constant", "level": level}}
    data.update(fields)
    return parse_profile(data)


def test_versions_are_content_addressed(store):
    first = store.put(make(level=0.5))
    again = store.put(make(level=0.5))
    changed = store.put(make(level=0.7))
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    assert (changed.version, changed.created) == (2, True)
    assert store.get("web-cpu").profile.load_pattern.level == 0.7
    assert store.get("web-cpu", 1).profile.load_pattern.level == 0.5
    assert [s.version for s in store.versions("web-cpu")] == [1, 2]
    assert store.get("web-cpu", 1).created_by  # who stored it is recorded
    with pytest.raises(ProfileNotFound):
        store.get("web-cpu", 3)
    with pytest.raises(ProfileNotFound):
        store.get("nobody")


def test_queries_by_resource_source_priority_and_trigger(store):
    store.put_many([
        make("a", resource_type="cpu", priority=90, trigger_conditions=[{"kind": "cron", "cron": "0 2 * * *"}]),
        make("b", resource_type="memory", priority=10, source="calendar"),
        make("c", resource_type="cpu", priority=50, trigger_conditions=[{"kind": "event", "event": "release"}]),
    ])
    store.put(make("a", level=0.9, resource_type="cpu", priority=90))  # version 2 drops the trigger
    assert [s.profile_id for s in store.list()] == ["a", "c", "b"]  # priority order
    assert [s.profile_id for s in store.list(resource_type="cpu")] == ["a", "c"]
    assert [s.profile_id for s in store.list(source="calendar")] == ["b"]
    assert [s.profile_id for s in store.list(min_priority=50)] == ["a", "c"]
    assert [s.profile_id for s in store.list(trigger_kind="event")] == ["c"]
    assert [s.profile_id for s in store.list(trigger_kind="cron")] == []  # only the latest version counts
    assert [(s.profile_id, s.version) for s in store.list(trigger_kind="cron", latest_only=False)] == [("a", 1)]


def test_series_round_trip_by_time_range_and_replace(store):
    p = make(duration="2h")
    v = store.put(p).version
    r = render(p, start=T0, step=1.0)
    assert store.write_series(p.profile_id, v, r.timestamps, r.values, batch_size=1000) == 7200
    window = store.read_series(p.profile_id, v, start=T0 + 600, end=T0 + 1200)
    assert len(window) == 600
    assert window["timestamp"].iloc[0].timestamp() == T0 + 600
    assert np.allclose(window["value"], 0.5)
    # Writing the same span again replaces it rather than duplicating rows.
    store.write_series(p.profile_id, v, r.timestamps[:100], r.values[:100] * 2)
    full = store.read_series(p.profile_id, v)
    assert len(full) == 7200 and full["value"].iloc[0] == 1.0 and full["value"].iloc[100] == 0.5


def test_a_nan_series_is_refused_and_nothing_is_written(store):
    p = make()
    v = store.put(p).version
    vals = np.ones(10)
    vals[7] = np.nan
    with pytest.raises(ProfileError, match="point 7"):
        store.write_series(p.profile_id, v, T0 + np.arange(10.0), vals)
    assert store.read_series(p.profile_id, v).empty


def test_a_file_with_one_bad_profile_stores_nothing(store, tmp_path):
    good = "\n".join(
        f"- {{profile_id: p{i}, resource_type: cpu, duration: 1h, load_pattern: {{kind: constant, level: 0.{i}}}}}"
        for i in range(9)
    )
    bad = "- {profile_id: p9, resource_type: cpu, duration: 1h, load_pattern: {kind: custom, expression: 't / 0'}}"
    f = tmp_path / "ten.yaml"
    f.write_text(good + "\n" + bad + "\n")
    with pytest.raises(ProfileError) as err:
        load_into_store([f], store, render_start=T0)
    assert err.value.file == str(f) and err.value.profile_id == "p9" and err.value.field == "load_pattern"
    assert "division by zero" in str(err.value)
    assert store.list() == []


def test_a_batch_that_fails_in_the_database_rolls_back_whole(store):
    store.put(make("keep", level=0.1))
    long_actor = "x" * 10_000  # truncated, not an error
    store.put(make("fine"), created_by=long_actor)
    with pytest.raises(ProfileError, match="two different definitions"):
        store.put_many([make("new1"), make("new2"), make("new2", level=0.9)])
    assert {s.profile_id for s in store.list()} == {"keep", "fine"}


def test_migrations_create_exactly_the_declared_schema(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shaper_pipelines.store.database import MIGRATIONS

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "shaper_alembic_version"})
        assert compare_metadata(context, metadata) == []
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert conn.execute(sa.text("SELECT version_num FROM shaper_alembic_version")).scalar() == head
    ProfileStore(store.url).close()  # opening again is a no-op migration


WRITER = textwrap.dedent("""
    import sys, time
    from shaper_pipelines.lib.profile import parse_profile
    from shaper_pipelines.store.profile_store import ProfileStore
    url, order, go = sys.argv[1], [float(x) for x in sys.argv[2].split(",")], float(sys.argv[3])
    store = ProfileStore(url)
    time.sleep(max(0.0, go - time.time()))
    for level in order:
        store.put(parse_profile({"profile_id": "shared", "resource_type": "cpu", "duration": "1h",
                                 "load_pattern": {"kind": "constant", "level": level}}))
    print("ok")
""")


def test_two_processes_writing_the_same_profile_end_consistent(store_url):
    levels = [round(0.05 * i, 2) for i in range(1, 21)]
    go = time.time() + 3.0  # both start writing at the same instant, after their imports
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, store_url, ",".join(map(str, order)), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for order in (levels, levels[::-1])
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    with ProfileStore(store_url) as store:
        versions = store.versions("shared")
    assert [v.version for v in versions] == list(range(1, 21))
    assert sorted(v.profile.load_pattern.level for v in versions) == levels
    assert len({v.content_hash for v in versions}) == 20


def test_a_stored_row_that_no_longer_parses_is_skipped_and_the_others_are_listed(store, caplog):
    """Rows written by an older version: a cron that never fires, JSON that is not a profile."""
    import json
    from datetime import datetime

    from shaper_pipelines.store.schema import profile_versions

    good = parse_profile({"profile_id": "good", "resource_type": "cpu", "duration": "1m",
                          "load_pattern": {"kind": "constant", "level": 0.1},
                          "trigger_conditions": [{"kind": "cron", "cron": "0 9 * * *"}]})
    store.put(good)
    never = json.loads(json.dumps(good.canonical()))
    never["profile_id"] = "never"
    never["trigger_conditions"][0]["cron"] = "0 0 31 2 *"
    row = dict(version=1, content_hash="x" * 16, resource_type="cpu", source="predefined", priority=50,
               trigger_kinds=",cron,", created_at=datetime(2026, 1, 1), created_by="old")
    with store.engine.begin() as conn:
        conn.execute(profile_versions.insert().values(profile_id="never", definition=json.dumps(never), **row))
        conn.execute(profile_versions.insert().values(profile_id="junk", definition="{not json", **row))
    with caplog.at_level("WARNING"):
        listed = store.list()
        assert [s.profile_id for s in listed] == ["good"]
        assert store.list(trigger_kind="cron")[0].profile_id == "good"
    assert {pid for pid, _, _ in store.skipped} == {"never", "junk"}
    assert "'never'" in caplog.text and "'junk'" in caplog.text
    with pytest.raises(ProfileError, match="never fires"):
        store.get("never")

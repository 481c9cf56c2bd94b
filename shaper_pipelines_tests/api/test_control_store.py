"""The scaling mode store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shaper_pipelines.store.control_store import DEFAULT_MODE, ControlStore


@pytest.fixture
def control(store_url):
    s = ControlStore(store_url)
    yield s
    s.close()


def test_the_default_is_a_dry_run_that_is_not_paused(control):
    mode = control.scaling_mode()
    assert mode == DEFAULT_MODE
    assert mode.dry_run is True and mode.paused is False and mode.changed_at is None
    assert control.mode_history() == []


def test_the_newest_change_is_in_force_and_every_change_is_kept(control):
    first = control.set_scaling_mode(dry_run=False, paused=False, actor="alice", note="go live")
    second = control.set_scaling_mode(dry_run=False, paused=True, actor="bob" * 100, note="incident 42")
    mode = ControlStore(control.url).scaling_mode()  # a new connection: it is in the database
    assert (mode.dry_run, mode.paused, mode.note) == (False, True, "incident 42")
    assert mode.changed_by == ("bob" * 100)[:200]  # truncated to the column, not an error
    assert mode.changed_at.tzinfo is not None
    assert abs(mode.changed_at - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert mode == second
    history = control.mode_history()
    assert [h.note for h in history] == ["incident 42", "go live"]
    assert history[1].changed_by == first.changed_by == "alice"
    assert control.mode_history(limit=1) == [mode]


def test_a_change_needs_an_actor(control):
    with pytest.raises(ValueError, match="actor"):
        control.set_scaling_mode(dry_run=True, paused=False, actor="")
    assert control.scaling_mode() == DEFAULT_MODE

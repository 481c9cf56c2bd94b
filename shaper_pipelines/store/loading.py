"""Profile files into the store: validate every file first, then write all of them at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from shaper_pipelines.lib.profile import Profile, ProfileError, Rendered, load_profiles_file, profile_files, render
from shaper_pipelines.store.profile_store import ProfileStore, PutResult


@dataclass
class LoadReport:
    files: list[Path]
    profiles: list[Profile]
    results: list[PutResult]
    rendered: dict[str, Rendered] = field(default_factory=dict)
    series_rows: int = 0

    @property
    def created(self) -> list[PutResult]:
        return [r for r in self.results if r.created]


def validate_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Profile]]:
    """Every profile in the named files and folders, each validated and rendered once at a coarse
    step, so that an expression dividing by zero at some hour is refused here, not mid-run.
    Raises the first ProfileError; profile ids must be unique across all files."""
    files = profile_files(paths)
    if not files:
        raise ProfileError("no profile files (.yaml, .yml, .json) found in " + ", ".join(map(str, paths)))
    profiles: list[Profile] = []
    origin: dict[str, Path] = {}
    for f in files:
        for p in load_profiles_file(f):
            if p.profile_id in origin:
                raise ProfileError(f"also defined in {origin[p.profile_id]}", file=str(f), profile_id=p.profile_id)
            origin[p.profile_id] = f
            try:
                render(p, start=0, step=max(1.0, p.duration / 20_000))
            except ProfileError as exc:
                raise ProfileError(exc.reason, file=str(f), profile_id=p.profile_id, field=exc.field) from None
            profiles.append(p)
    return files, profiles


def _step(duration: float, step: float) -> float:
    """``step``, unless that leaves a short profile with under ten points (an 8-second rehearsal
    at a 60-second step would have none)."""
    return step if duration >= 10 * step else max(1.0, duration / 100)


def load_into_store(
    paths: Iterable[str | Path],
    store: ProfileStore,
    *,
    created_by: str | None = None,
    render_start: float | None = None,
    render_step: float = 60.0,
) -> LoadReport:
    """Validate, store, and (when ``render_start`` is given) render and store each profile's series
    from that instant. Nothing is written unless every file is valid."""
    files, profiles = validate_paths(paths)
    rendered = {}
    if render_start is not None:
        rendered = {p.profile_id: render(p, start=render_start, step=_step(p.duration, render_step))
                    for p in profiles}
    results = store.put_many(profiles, created_by=created_by)
    report = LoadReport(files=files, profiles=profiles, results=results, rendered=rendered)
    for result in results:
        if result.profile_id in rendered:
            r = rendered[result.profile_id]
            report.series_rows += store.write_series(result.profile_id, result.version, r.timestamps, r.values)
    return report

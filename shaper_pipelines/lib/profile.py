"""The synthetic load profile: what load, of which resource, shaped how, for how long, when.

A profile is immutable. Its identity is ``profile_id``; its version is the hash of its canonical
content, so the same definition written twice is one version and any change is a new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shaper_pipelines.lib.durations import Duration
from shaper_pipelines.lib.expr import ExpressionError
from shaper_pipelines.lib.patterns import MAX_NESTING, PATTERN_KINDS, Pattern, nesting_depth
from shaper_pipelines.lib.timegrid import TimeGrid, check_timezone, to_epoch_seconds
from shaper_pipelines.lib.triggers import TRIGGER_KINDS, Trigger

MAX_DURATION_S = 400 * 86400
MAX_RENDER_POINTS = 50_000_000


class ResourceType(str, Enum):
    cpu = "cpu"
    memory = "memory"
    network_io = "network_io"
    disk_io = "disk_io"


class Source(str, Enum):
    historical = "historical"
    calendar = "calendar"
    user_behaviour = "user_behaviour"
    ab_test = "ab_test"
    release = "release"
    predefined = "predefined"


# What one unit of intensity means when a profile does not say.
DEFAULT_UNITS = {
    ResourceType.cpu: "cpu_share",  # share of the agent's allowed cores, 0..1
    ResourceType.memory: "MiB",  # resident size
    ResourceType.network_io: "requests_per_second",  # HTTP arrival rate
    ResourceType.disk_io: "MiB_per_second",  # written and fsynced
}


class Profile(BaseModel):
    """A synthetic load profile. Field order is the order YAML exports use."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    profile_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    resource_type: ResourceType
    load_pattern: Pattern
    duration: Duration
    scaling_factor: float = Field(default=1.0, gt=0, le=1000, allow_inf_nan=False)
    priority: int = Field(default=50, ge=0, le=100, description="higher runs first")
    trigger_conditions: list[Trigger] = Field(default_factory=list, max_length=32)
    source: Source = Source.predefined
    unit: str = ""
    description: str = Field(default="", max_length=4000)
    timezone: str = "UTC"
    lineage: dict[str, Any] = Field(default_factory=dict, description="where the profile came from")

    @field_validator("duration")
    @classmethod
    def _duration(cls, value):
        if not 0 < value <= MAX_DURATION_S:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S // 86400} days")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value):
        return check_timezone(value)

    @field_validator("lineage")
    @classmethod
    def _lineage(cls, value):
        try:
            text = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"lineage must be plain JSON data: {exc}") from None
        if len(text) > 64_000:
            raise ValueError("lineage is larger than 64 kB")
        return value

    @model_validator(mode="after")
    def _defaults_and_depth(self):
        if not self.unit:
            object.__setattr__(self, "unit", DEFAULT_UNITS[self.resource_type])
        if nesting_depth(self.load_pattern) > MAX_NESTING:
            raise ValueError(f"load_pattern nests deeper than {MAX_NESTING} levels")
        size = len(json.dumps(self.model_dump(mode="json", by_alias=True), separators=(",", ":")))
        if size > MAX_PROFILE_BYTES:
            raise ValueError(f"the profile is {size // 1024:,} KiB as stored; the budget is "
                             f"{MAX_PROFILE_BYTES // 1024} KiB (a replay of a week of minutes fits)")
        return self

    def canonical(self) -> dict[str, Any]:
        """The content the version hash is taken over: JSON types, durations in short form."""
        return self.model_dump(mode="json", by_alias=True)

    @property
    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def trigger_kinds(self) -> list[str]:
        return sorted({t.kind for t in self.trigger_conditions})


class ProfileError(ValueError):
    """A profile that cannot be used, naming the file, the profile and the field."""

    def __init__(self, message: str, *, file: str | None = None, profile_id: str | None = None, field: str | None = None):
        self.file, self.profile_id, self.field, self.reason = file, profile_id, field, message
        where = []
        if file:
            where.append(f"file {file}")
        if profile_id:
            where.append(f"profile {str(profile_id)[:100]!r}")
        if field:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def _field_path(loc: Iterable[Any]) -> str:
    path, previous = "", None
    for part in loc:
        # Pydantic names the union member it tried right after the union's position
        # (load_pattern.custom.expression); the reader wants the field, not the member.
        union_tag = (part in PATTERN_KINDS or part in TRIGGER_KINDS) and (
            isinstance(previous, int) or previous in ("load_pattern", "pattern"))
        if isinstance(part, int):
            path += f"[{part}]"
        elif not union_tag:
            path += f".{part}" if path else str(part)
        previous = part
    return path


def parse_profile(data: Any, *, file: str | None = None, index: int | None = None) -> Profile:
    """A validated Profile from plain data, or a ProfileError naming where it went wrong."""
    profile_id = data.get("profile_id") if isinstance(data, dict) else None
    if not isinstance(data, dict):
        where = f"entry {index}" if index is not None else "document"
        raise ProfileError(f"{where} is a {type(data).__name__}, expected a mapping of profile fields", file=file)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        extra = len(exc.errors()) - 1
        if extra:
            message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
        raise ProfileError(message, file=file, profile_id=profile_id, field=_field_path(first["loc"]) or None) from None


# Budgets for a profile file, checked before anything is expanded. The largest predefined profile
# (profiles_data/profiles/weekday_business_hours.yaml) is 1.3 kB and 82 YAML nodes; a derived
# profile replays a week of hourly values (168 numbers, about 2 kB). A file may hold many profiles
# (an export of a whole store), so the byte budget is about 800 times the largest predefined file
# and the node budget about 250 times its nodes: room for a replay of a week of minutes (10,080
# values), or a hundred ordinary profiles. Nodes cost far more than bytes (building a node in
# Python takes some 30 µs on a busy machine), so the node budget is what keeps a refusal, or an
# acceptance, within a second; a "sum" of 32 patterns nested four deep (a million leaves) is
# refused after its first 20,000 nodes, never built.
MAX_FILE_BYTES = 1024 * 1024
MAX_YAML_NODES = 20_000
# One profile's canonical JSON: what a store row holds. 200 times the largest predefined profile;
# a replay of a week of minutes fits. A 2 MB row (that every later listing parses) cannot be stored.
MAX_PROFILE_BYTES = 256 * 1024

# libyaml's parser when PyYAML was built with it (the pure-Python one is about ten times slower).
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _check_events(text: str) -> None:
    """Walk the YAML event stream (no Python objects are built) and refuse, at the first offence,
    an alias (``*name``: a few hundred bytes of nested aliases expand into gigabytes, "billion
    laughs", and a profile file has no need of them) or a node beyond MAX_YAML_NODES."""
    nodes = 0
    for event in yaml.parse(text, Loader=_Parser):
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"uses a YAML alias (*{event.anchor}) at {_where(event)}; profile files may not "
                           "(aliases can expand a small file into gigabytes)")
        if isinstance(event, _NODE_EVENTS):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise _Refused(f"has more than the budget of {MAX_YAML_NODES:,} YAML nodes (values, keys, lists, "
                               f"mappings) at {_where(event)}; split it into several files")


def _where(event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


class _Refused(Exception):
    pass


def load_profiles_file(path: str | Path, *, validate: bool = True) -> list[Profile]:
    """All profiles in a YAML or JSON file (one mapping, a list, or ``profiles: [...]``), each
    (with ``validate``) rendered whole at the 1 s step an agent follows (``validate_render``).

    All or nothing: one bad profile fails the whole file, so a store never holds half of it.
    """
    profiles = _read_profiles_file(path)
    if validate:
        validate_renders(profiles, file=str(path))
    return profiles


def _read_profiles_file(path: str | Path) -> list[Profile]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            # Read one byte past the budget rather than trusting the size a stat reports (a pipe or
            # /dev/stdin reports none).
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError(f"is larger than the budget of {MAX_FILE_BYTES // 1024} KiB for a profile file; "
                           "split it into several files", file=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError("is not UTF-8 text", file=str(path)) from None
    return parse_profiles_text(text, file=str(path))


def parse_profiles_text(text: str, *, file: str | None = None) -> list[Profile]:
    """The profiles of YAML or JSON text, within the byte and node budgets, without aliases."""
    if len(text) > MAX_FILE_BYTES:
        raise ProfileError(f"is larger than the budget of {MAX_FILE_BYTES // 1024} KiB for profile text", file=file)
    try:
        _check_events(text)
        # No alias and a bounded number of nodes: building them is now bounded too.
        documents = [d for d in yaml.load_all(text, Loader=_Parser) if d is not None]
    except _Refused as exc:
        raise ProfileError(str(exc), file=file) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise ProfileError(f"is not valid YAML: {message[:300]}", file=file) from None
    except RecursionError:
        raise ProfileError("nests too deeply to be a profile", file=file) from None
    path = file
    entries: list[Any] = []
    for doc in documents:
        if isinstance(doc, dict) and "profiles" in doc and "profile_id" not in doc:
            doc = doc["profiles"]
        entries.extend(doc if isinstance(doc, list) else [doc])
    if not entries:
        raise ProfileError("holds no profiles", file=path)
    profiles = [parse_profile(entry, file=path, index=i) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for p in profiles:
        if p.profile_id in seen:
            raise ProfileError("defined twice in one file", file=path, profile_id=p.profile_id)
        seen.add(p.profile_id)
    return profiles


def profile_files(paths: Iterable[str | Path]) -> list[Path]:
    """YAML/JSON files named directly or found under the named folders, in a stable order."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json") and f.is_file()))
        else:
            out.append(p)
    return out


def dump_profiles_yaml(profiles: Iterable[Profile]) -> str:
    docs = [p.canonical() for p in profiles]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class Rendered:
    """Target intensity per point: ``timestamps`` in epoch seconds, ``values`` in the profile's unit."""

    timestamps: np.ndarray
    values: np.ndarray

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"timestamp": pd.to_datetime(self.timestamps, unit="s", utc=True), "value": self.values})


def render(profile: Profile, start: Any = 0.0, step: float = 1.0, duration: float | None = None,
           max_points: int = MAX_RENDER_POINTS) -> Rendered:
    """The profile's target intensity (``scaling_factor`` applied) from ``start`` every ``step``
    seconds for its duration (or ``duration``), at most ``max_points`` points. Refuses values that
    are not finite or negative, naming the first such point, so no NaN ever reaches a store or an
    agent."""
    span = profile.duration if duration is None else float(duration)
    if step <= 0:
        raise ProfileError("step must be positive", profile_id=profile.profile_id)
    if span / step > max_points:
        raise ProfileError(f"rendering {span / step:,.0f} points is more than {max_points:,}; use a coarser step",
                           profile_id=profile.profile_id)
    grid = TimeGrid.regular(to_epoch_seconds(start), span, step)
    values = _render_checked(profile, grid)
    return Rendered(timestamps=grid.epoch, values=values)


def _render_checked(profile: Profile, grid: TimeGrid) -> np.ndarray:
    try:
        values = profile.load_pattern.render(grid, profile.timezone) * profile.scaling_factor
    except ExpressionError as exc:
        raise ProfileError(str(exc), profile_id=profile.profile_id, field="load_pattern") from None
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        what = "negative" if np.isfinite(values[i]) else "not a finite number"
        raise ProfileError(f"intensity is {what} ({values[i]}) at t={grid.t[i]:g}s; clip it to 0 or above",
                           profile_id=profile.profile_id, field="load_pattern")
    return values


# The finest step anything renders a profile at: a load agent follows its profile every second.
FINEST_STEP_S = 1.0
# Points rendered at once while validating. A profile up to this long (12 days at 1 s) is rendered
# in one piece, exactly as an agent renders it (noise() draws the same numbers); a longer one in
# pieces of this size, so validating a 400-day profile needs tens of MB, not gigabytes.
VALIDATE_CHUNK = 2 ** 20


def validation_start(profile: Profile) -> float:
    """Where validation renders from: a Monday 00:00 in the profile's time zone, so a profile of a
    day or longer meets every second of the local day (``1/(hour-3.5)`` meets 03:30:00)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime(2024, 1, 1, tzinfo=ZoneInfo(profile.timezone)).timestamp()


# The 1 s points one file may ask validation to render: three 400-day profiles, or 165 week-long
# ones. Validation costs about 50 ms a simulated week; without a budget a 1 MB file of a thousand
# 400-day profiles would take most of an hour to refuse or accept.
MAX_VALIDATION_POINTS = 100_000_000


def validate_renders(profiles: Iterable[Profile], *, file: str | None = None) -> None:
    """``validate_render`` for each profile, within MAX_VALIDATION_POINTS in all; errors name
    ``file``."""
    profiles = list(profiles)
    total = sum(int(p.duration / FINEST_STEP_S) for p in profiles)
    if total > MAX_VALIDATION_POINTS:
        raise ProfileError(f"its {len(profiles)} profile(s) last {total:,} seconds in all; validating them at 1 s "
                           f"is over the budget of {MAX_VALIDATION_POINTS:,} points for one file; split it", file=file)
    for p in profiles:
        try:
            validate_render(p)
        except ProfileError as exc:
            raise ProfileError(exc.reason, file=file, profile_id=p.profile_id, field=exc.field) from None


def validate_render(profile: Profile, *, start: float | None = None) -> None:
    """Render the whole profile at the finest step an agent uses (1 s), vectorised and in pieces,
    and raise the ProfileError the agent would meet: a point that is not finite or is negative,
    between the points of any coarser validation grid. Nothing that fails at run time is stored."""
    start = validation_start(profile) if start is None else float(start)
    count = int(np.floor(profile.duration / FINEST_STEP_S + 1e-9))
    for lo in range(0, max(count, 1), VALIDATE_CHUNK):
        hi = min(count, lo + VALIDATE_CHUNK)
        t = np.arange(lo, hi, dtype=np.float64) * FINEST_STEP_S
        _render_checked(profile, TimeGrid(start=start, t=t, duration=profile.duration))

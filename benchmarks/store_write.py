"""How fast the profile store writes rendered series, on SQLite and on a throwaway PostgreSQL.

The baseline, measured in the same run on the same database, is one INSERT statement per row in
one transaction: what a straightforward ORM loop does. The store batches rows instead.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from benchmarks.common import publish
from shaper_pipelines.lib.profile import parse_profile, render
from shaper_pipelines.store.profile_store import ProfileStore
from shaper_pipelines.store.schema import profile_series

ROWS = 200_000
BASELINE_ROWS = 20_000
START = 1_772_409_600.0


def measure(url: str) -> tuple[float, float]:
    store = ProfileStore(url)
    profile = parse_profile({"profile_id": "bench", "resource_type": "cpu", "duration": ROWS,
                             "load_pattern": {"kind": "peak_valley", "peak": 1, "valley": 0.1}})
    version = store.put(profile).version
    r = render(profile, start=START, step=1.0)
    started = time.perf_counter()
    store.write_series("bench", version, r.timestamps, r.values)
    batched = ROWS / (time.perf_counter() - started)

    pk = store.get("bench", version).pk
    ts = (np.round((START + 10 * ROWS + np.arange(BASELINE_ROWS)) * 1000)).astype(np.int64).tolist()
    vals = r.values[:BASELINE_ROWS].tolist()
    started = time.perf_counter()
    with store.engine.begin() as conn:
        for a, b in zip(ts, vals):
            conn.execute(sa.insert(profile_series).values(version_pk=pk, ts_ms=a, value=b))
    per_row = BASELINE_ROWS / (time.perf_counter() - started)
    store.close()
    return batched, per_row


def main() -> None:
    from shaper_pipelines_tests.services.postgres import start_postgres

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite (file, WAL)"] = measure(f"sqlite:///{Path(tmp) / 'bench.db'}")
    server = start_postgres()
    try:
        results["PostgreSQL 15 (loopback)"] = measure(server.create_database())
    finally:
        server.stop()
    lines = [
        f"Profile store series writes: {ROWS:,} rows through `ProfileStore.write_series` (batched, one transaction)",
        f"against {BASELINE_ROWS:,} rows inserted one statement at a time in the same run:",
        "",
        "| database | batched rows/s | per-row rows/s (baseline) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, (batched, per_row) in results.items():
        lines.append(f"| {name} | {batched:,.0f} | {per_row:,.0f} | {batched / per_row:.1f}x |")
    publish("store_write", "\n".join(lines))


if __name__ == "__main__":
    main()

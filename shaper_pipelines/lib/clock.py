"""The loop's one idea of "now".

Every asset that asks what time it is (which day of history is the newest, where a plan starts,
what the export calls current) asks here, so a replay of past days can run the real assets at a
simulated time by replacing ``now`` (benchmarks/daily_loop.py does) instead of each asset taking
its own reading of the wall clock.
"""

from __future__ import annotations

import pandas as pd


def now() -> pd.Timestamp:
    """The current time, UTC."""
    return pd.Timestamp.now(tz="UTC")

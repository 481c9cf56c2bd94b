"""Run every benchmark: ``python -m benchmarks`` (or one: ``python -m benchmarks.render``)."""

from benchmarks import calendar, capacity, derive, fidelity, fleet, merges, render, replay, store_write

render.main()
store_write.main()
derive.main()
fidelity.main()
replay.main()
merges.main()
fleet.main()
calendar.main()
capacity.main([])  # its own defaults, not python -m benchmarks' arguments

"""Run every benchmark: ``python -m benchmarks`` (or one: ``python -m benchmarks.render``)."""

from benchmarks import derive, fidelity, fleet, render, replay, store_write

render.main()
store_write.main()
derive.main()
fidelity.main()
replay.main()
fleet.main()

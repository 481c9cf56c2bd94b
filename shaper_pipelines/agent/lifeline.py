"""Load never outlives the agent accountable for it, however the agent dies (SIGKILL included).

Each process that makes load asks Linux for a parent-death signal (``PR_SET_PDEATHSIG``): when
its parent dies, the kernel sends it SIGKILL. The request only takes effect from the moment it is
made, so each process then checks that its parent is still the one it expects; if that parent
died in between (and the process was re-parented to init or a subreaper), it exits at once.

Three kinds of process use this: the agent's CPU and memory workers (``die_with_parent`` first
thing in the worker), Locust started by the agent (through this module as a wrapper, run as
``python -m shaper_pipelines.agent.lifeline <agent pid> locust ...``: no ``preexec_fn`` in the
multi-threaded agent) and the workers Locust forks for ``--processes`` (an at-fork hook in the
locustfile: their parent is the Locust master, which dies with the agent).

Linux sends the signal when the *thread* that created the child ends, not only the process. The
agent therefore creates a run's load processes in that run's own thread (``Agent._drive``), which
lives exactly as long as the run: never from a request handler's pooled thread, which may retire
while the run goes on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if ``expected_parent`` is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        # Without the kernel's guarantee this process could become load nobody controls.
        os._exit(70)
    if os.getppid() != expected_parent:
        os._exit(0)


def main(argv: list[str]) -> None:
    """``<expected parent pid> <module> [args...]``: run ``module`` as ``python -m`` would, tied to
    the parent's life."""
    import runpy

    expected, module, *args = argv
    die_with_parent(int(expected))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Run a command under an address-space ceiling and report its own peak resident memory.

``python -I -S measured.py FD LIMIT ARGV...``: forks, sets RLIMIT_AS to LIMIT in the child, execs
ARGV there, waits, writes the child's ``ru_maxrss`` (KiB) to file descriptor FD and exits as the
child did (by the same signal when it was killed).

Why a launcher: Linux carries a process's peak resident size across fork and exec, so a command
forked straight from the test process reports at least the test process's own size (610 MB after
a 600 MB allocation, for ``python -c pass``). Forked from this small process instead (about 10 MB,
standard library only), the figure is the command's.
"""

import os
import resource
import signal
import sys


def main() -> None:
    fd, limit, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    pid = os.fork()
    if pid == 0:
        try:
            os.close(fd)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    # The test's timeout kills the whole session; pass on a polite termination too.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    _, status, usage = os.wait4(pid, 0)
    os.write(fd, str(usage.ru_maxrss).encode())
    os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()

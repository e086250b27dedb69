"""`local up` stops on SIGTERM whichever of its threads the kernel hands the signal to.

A process-directed signal may be delivered to any thread. When it was not the main thread, the main
thread slept on in `threading.Event.wait()` and the Python handler never ran: `local up` ignored `kill`
(seen in CI, and reproduced under load with a thread dump). `pthread_kill` on a worker thread makes
that delivery certain here."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from routing_manager import project

WAIT_AFTER_A_WORKER_GETS_THE_SIGNAL = textwrap.dedent("""
    import signal, threading
    from routing_manager.local.server import wait_for_stop_signal

    wait = wait_for_stop_signal()
    main_is_waiting = threading.Event()

    def worker():
        main_is_waiting.wait()
        signal.pthread_kill(threading.get_ident(), signal.{signal})  # this thread, not the main one
        threading.Event().wait()  # and it stays alive, as moto's threads do

    threading.Thread(target=worker, daemon=True).start()
    # A signal that came early would be in the wakeup fd and pass as well; this lets the main thread be asleep.
    threading.Timer(0.2, main_is_waiting.set).start()
    wait()
    print("stopped")
""")


def _run(signal_name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WAIT_AFTER_A_WORKER_GETS_THE_SIGNAL.format(signal=signal_name)],
                          capture_output=True, text=True, timeout=60, cwd=project.ROOT)


def test_sigterm_delivered_to_a_worker_thread_stops_the_wait() -> None:
    done = _run("SIGTERM")
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped\n", "")


def test_ctrl_c_delivered_to_a_worker_thread_stops_the_wait() -> None:
    done = _run("SIGINT")
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped\n", "")

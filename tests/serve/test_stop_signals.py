"""`smartsession serve` started without a terminal (stdin /dev/null, SIGINT ignored, as a script or supervisor
starts it) stops on SIGINT as on SIGTERM, and says so."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from testkit.serving import SERVER_FILE, free_port


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_a_signal_even_when_sigint_was_ignored_and_says_so(tmp_path, sig):
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "smartsession", "serve", "--host", "127.0.0.1", "--port", str(free_port()),
            "--pool-size", "0", "--data-dir", str(data)]
    ignore = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731  (what `cmd &` in a script does)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=ignore, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (data / SERVER_FILE).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(1)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert f"smartsession serve: {sig.name} received, stopping" in out
    assert "smartsession serve stopped" in out
    assert "Traceback" not in out

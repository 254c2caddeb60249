"""The kernels of `smartsession serve` skip ipykernel's flush of stdout and stderr when nothing was written, and
still send what was: a real kernel started with the server's arguments."""

from __future__ import annotations

from jupyter_client.manager import start_new_kernel

from smartsession.serve.kernelio import KERNEL_ARGUMENTS


def test_a_kernel_with_quiet_streams_still_sends_what_it_prints():
    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=list(KERNEL_ARGUMENTS))
    try:
        outputs = []

        def collect(msg):
            if msg["msg_type"] == "stream":
                outputs.append((msg["content"]["name"], msg["content"]["text"]))

        reply = kc.execute_interactive(
            "import sys; print(type(sys.stdout).__name__, type(sys.stderr).__name__); "
            "print('to stderr', file=sys.stderr); sys.stdout.flush()",
            output_hook=collect, timeout=60,
        )
        assert reply["content"]["status"] == "ok"
        assert ("stdout", "QuietOutStream QuietOutStream\n") in outputs
        assert ("stderr", "to stderr\n") in outputs
        # Nothing written since: the flush returns at once, and the kernel goes on answering.
        reply = kc.execute_interactive("sys.stdout.flush(); sys.stderr.flush()", output_hook=collect, timeout=60)
        assert reply["content"]["status"] == "ok" and len(outputs) == 2
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

"""The kernels of `smartsession serve` skip ipykernel's flush of stdout and stderr when nothing was written, and
still send what was: a real kernel started with the server's arguments."""

from __future__ import annotations

from jupyter_client.manager import start_new_kernel

from smartsession.seams.kernel import KERNEL_ARGUMENTS


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


def _replies(kc, msg_id: str, timeout: float = 30.0) -> list[dict]:
    """The iopub messages a request caused, up to its idle status."""
    import time

    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen
    raise AssertionError(f"no idle status for {msg_id}: {seen}")


def test_a_widget_message_gets_its_idle_status_without_a_busy_one_and_code_keeps_both():
    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=list(KERNEL_ARGUMENTS))
    try:
        outputs: list[str] = []
        reply = kc.execute_interactive(
            "import logging; k = get_ipython().kernel\n"
            "from comm import get_comm_manager\n"
            "get_comm_manager().register_target('echo', lambda comm, msg: comm.on_msg("
            "lambda m: comm.send({'got': m['content']['data']})))\n"
            "print(type(k).__name__, k.log.isEnabledFor(logging.DEBUG), k.log.isEnabledFor(logging.WARNING))",
            output_hook=lambda m: outputs.append(m["content"].get("text", "")), timeout=60,
        )
        assert reply["content"]["status"] == "ok"
        # The server's kernel class; its debug lines are no longer built only to be dropped, warnings still go out.
        assert "PageKernel False True\n" in outputs
        code = kc.session.msg("execute_request", {"code": "1", "silent": False})
        kc.shell_channel.send(code)
        states = [m["content"]["execution_state"] for m in _replies(kc, code["header"]["msg_id"])
                  if m["msg_type"] == "status"]
        assert states == ["busy", "idle"]

        opened = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "echo", "data": {}})
        kc.shell_channel.send(opened)
        _replies(kc, opened["header"]["msg_id"])
        sent = kc.session.msg("comm_msg", {"comm_id": "c1", "data": {"n": 7}})
        kc.shell_channel.send(sent)
        replies = _replies(kc, sent["header"]["msg_id"])
        assert [m["msg_type"] for m in replies] == ["comm_msg", "status"]
        assert replies[0]["content"]["data"] == {"got": {"n": 7}}
        assert replies[1]["content"]["execution_state"] == "idle"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

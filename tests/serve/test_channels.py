"""The kernel websocket of a real `smartsession serve` delivers a burst of small messages at once.

A live page gets a widget update and a frame's ack back to back; Nagle's algorithm would hold the second
behind the browser's delayed TCP ack (up to 40 ms). The real kernel answers a real widget change here.
"""

from __future__ import annotations

import json
import time

from websockets.sync.client import connect

from smartsession.serve.channels import busy_for_a_comm_message
from testkit.serving import kernel_id

from servekit import kernel_message, widget_models


def burst_times(server, rounds: int = 30) -> list[float]:
    """Seconds from a slider change to the kernel's last answer (the label's update, then idle), per round."""
    page = server.request(server.join_url)
    assert page.status == 200
    kid = kernel_id(page.text)
    slider, label = widget_models(page.text)
    url = server.url.replace("http", "ws", 1) + f"api/kernels/{kid}/channels"
    times = []
    with connect(url, open_timeout=30, max_size=None) as ws:
        ws.send(json.dumps(kernel_message("kernel_info_request", {})))
        while json.loads(ws.recv(timeout=30))["msg_type"] != "kernel_info_reply":
            pass
        for value in range(1, rounds + 1):
            update = {"method": "update", "state": {"value": value}, "buffer_paths": []}
            message = kernel_message("comm_msg", {"comm_id": slider, "data": update})
            sent = time.monotonic()
            ws.send(json.dumps(message))
            labelled = idle = False
            while not (labelled and idle):
                reply = json.loads(ws.recv(timeout=30))
                if reply["parent_header"].get("msg_id") != message["header"]["msg_id"]:
                    continue
                content = reply["content"]
                labelled |= reply["msg_type"] == "comm_msg" and content.get("comm_id") == label
                idle |= reply["msg_type"] == "status" and content.get("execution_state") == "idle"
                # The page has no use for the busy status of a widget message: the server leaves it out.
                assert content.get("execution_state") != "busy", "a comm message's busy status was relayed"
            times.append(time.monotonic() - sent)
            time.sleep(0.05)  # a frame's interval apart, like a live page
    server.shutdown_kernel(kid)
    return times


def test_a_widget_change_and_its_answers_arrive_without_nagle_delays(server):
    server.wait_warm(180)
    times = burst_times(server)
    # Each answer is several small messages: with Nagle on, about half the rounds take 45 ms or more here
    # (measured against Jupyter's own connection class), without it a few ms; a loaded machine adds a few slow ones.
    slow = [t for t in times if t >= 0.035]
    assert len(slow) <= len(times) // 5, sorted(round(t * 1000, 1) for t in times)


def _status(state: str, parent_type: str) -> list[bytes]:
    parts = [{"msg_type": "status"}, {"msg_type": parent_type}, {}, {"execution_state": state}]
    return [b"signature", *(json.dumps(p).encode() for p in parts)]


def test_only_the_busy_status_of_a_comm_message_is_left_out():
    assert busy_for_a_comm_message(_status("busy", "comm_msg"))
    # The page completes a message on its idle; code a page runs keeps both.
    assert not busy_for_a_comm_message(_status("idle", "comm_msg"))
    assert not busy_for_a_comm_message(_status("busy", "execute_request"))
    ack = [b"signature", b'{"msg_type": "comm_msg"}', b'{"msg_type": "comm_msg"}', b"{}", b'{"data": {}}']
    assert not busy_for_a_comm_message(ack)

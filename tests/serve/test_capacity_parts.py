"""The capacity benchmark's parts that need no server: the page client's wire format and widget lookup, and the
memory figures read from /proc."""

from __future__ import annotations

import os

import pytest
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1, serialize_msg_to_ws_v1

from testkit import memory
from testkit.pageclient import (
    FrameLog,
    PageError,
    PageWidgets,
    ack_of,
    comm_msg,
    decode,
    encode,
    jpeg_frames,
)


def test_a_frame_is_framed_as_jupyter_server_reads_it():
    msg = comm_msg("camera", {"method": "custom", "content": {"type": "frame", "seq": 3}}, "s1", [b"\xff\xd8jpeg"])
    channel, parts = deserialize_msg_from_ws_v1(encode(msg))
    assert channel == "shell"
    assert parts[4] == b"\xff\xd8jpeg"
    back = decode(encode(msg))
    assert back["content"] == msg["content"] and back["buffers"] == [b"\xff\xd8jpeg"]
    assert back["msg_type"] == "comm_msg"


def test_an_ack_from_the_kernel_is_read():
    parts = [b'{"msg_type": "comm_msg"}', b"{}", b"{}",
             b'{"comm_id": "cam", "data": {"method": "custom", "content": {"type": "ack", "seq": 7, "processed": true}}}']
    msg = decode(serialize_msg_to_ws_v1(parts, "iopub"))
    assert ack_of(msg, "cam") == {"type": "ack", "seq": 7, "processed": True}
    assert ack_of(msg, "another widget") is None


@pytest.mark.parametrize("data", [b"", b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 8, "text"])
def test_malformed_kernel_messages_are_refused(data):
    with pytest.raises((ValueError, IndexError)):
        decode(data)


def test_the_student_page_widgets_are_found_by_what_they_show():
    states = {
        "a": {"state": {"_model_name": "AnyModel", "fps": 12.0, "max_in_flight": 2}},
        "b": {"state": {"_model_name": "TextModel", "placeholder": "as your teacher will see it"}},
        "c": {"state": {"_model_name": "ButtonModel", "description": "I agree, start my camera"}},
        "d": {"state": {"_model_name": "ButtonModel", "description": "Pause"}},
    }
    assert PageWidgets.from_states(states) == PageWidgets("a", "b", "c", 2)
    with pytest.raises(PageError, match="no camera"):
        PageWidgets.from_states({k: v for k, v in states.items() if k != "a"})


def test_frames_loop_and_losses_count():
    frames = jpeg_frames([b"one", b"two"])
    assert frames(3, 1.5) == ({"type": "frame", "seq": 3, "t": 1.5, "width": 640, "height": 480}, [b"two"])
    log = FrameLog(sent=98, skipped=1, dropped=1)
    assert (log.ticks, log.lost) == (99, 2)


def test_smaps_rollup_gives_rss_pss_and_private_memory():
    text = """55d0c8a3b000-7ffd2e1f1000 ---p 00000000 00:00 0                          [rollup]
Rss:              408600 kB
Pss:              300400 kB
Shared_Clean:     150000 kB
Private_Clean:     10000 kB
Private_Dirty:    240000 kB
Swap:                  0 kB
"""
    fp = memory.parse_smaps_rollup(text)
    assert fp.mb() == {"rss": 399.0, "pss": 293.4, "uss": 244.1, "swap": 0.0}
    with pytest.raises(ValueError, match="smaps_rollup"):
        memory.parse_smaps_rollup("nothing here")


def test_this_process_has_a_footprint_and_a_parent():
    fp = memory.footprint(os.getpid())
    assert fp is not None and 0 < fp.uss <= fp.pss <= fp.rss
    assert os.getpid() in memory.children(os.getppid())
    assert memory.footprint(2**22 + 1) is None  # beyond pid_max: gone

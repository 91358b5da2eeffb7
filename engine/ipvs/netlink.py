"""A blocking generic-netlink request/reply channel on a plain socket, with pyroute2's message
classes for encoding and decoding.

pyroute2's own sockets run on an asyncio datagram endpoint that uvloop (the engine's loop) cannot
open for AF_NETLINK, and its sync wrapper needs a loop of its own in the thread. The kernel
answers a generic-netlink request while handling the send, so a blocking exchange costs a few
system calls and is safe to make from the event loop; a timeout bounds it regardless.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from typing import Any

from pyroute2.netlink import (
    GENL_ID_CTRL,
    NETLINK_GENERIC,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    ctrlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError

CTRL_CMD_GETFAMILY = 3
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid


class KernelError(OSError, NetlinkError):
    """The kernel's answer was an errno: an OSError (what callers of a system interface catch)
    that is also pyroute2's NetlinkError, with the errno in both `errno` and `code`."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        OSError.__init__(self, code, msg or os.strerror(code))
        self.code, self.extra_code = code, 0


class GenlChannel:
    def __init__(self, family: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.settimeout(timeout)
        self.sock.bind((0, 0))
        self.seq = 0
        self._lock = threading.Lock()  # one exchange at a time (the CLI and a thread may share)
        reply = self.request(_family_request(family), GENL_ID_CTRL, ctrlmsg)
        self.family_id: int = reply[0].get_attr("CTRL_ATTR_FAMILY_ID")

    def close(self) -> None:
        self.sock.close()

    def request(self, msg: Any, msg_type: int, reply_class: type, *, dump: bool = False) -> list[Any]:
        """Send msg, return the decoded replies; a kernel error raises KernelError(errno)."""
        with self._lock:
            self.seq += 1
            seq = self.seq
            msg["header"]["type"] = msg_type
            msg["header"]["flags"] = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
            msg["header"]["sequence_number"] = seq
            msg["header"]["pid"] = 0
            msg.encode()
            self.sock.send(msg.data)
            return self._replies(seq, msg_type, reply_class, dump)

    def _replies(self, seq: int, msg_type: int, reply_class: type, dump: bool) -> list[Any]:
        replies: list[Any] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, got_seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise KernelError(errno.EPROTO, "truncated netlink message")
                chunk = data[offset:offset + length]
                offset += (length + 3) & ~3
                if got_seq != seq:
                    continue  # a late reply to an earlier, timed-out request
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", chunk, _HEADER.size)[0]
                    if code:
                        raise KernelError(-code)
                    return replies  # the ACK ends a non-dump request
                if kind == NLMSG_DONE:
                    return replies
                if kind == msg_type:
                    reply = reply_class(chunk)
                    reply.decode()
                    replies.append(reply)


def _family_request(name: str) -> ctrlmsg:
    msg = ctrlmsg()
    msg["cmd"] = CTRL_CMD_GETFAMILY
    msg["version"] = 1
    msg["attrs"] = [("CTRL_ATTR_FAMILY_NAME", name)]
    return msg

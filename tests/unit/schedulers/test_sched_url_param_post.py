"""url_param check_post, the sans-IO part: how many body bytes the pick waits for, and the
parameter found in them (HAProxy's get_server_ph_post)."""
from __future__ import annotations

import pytest

from virtserve.engine.backend import Server
from virtserve.engine.config.model import ServerSpec
from virtserve.schedulers import PickContext, create
from virtserve.schedulers.keys import dechunk_first, post_param

FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"


def sched(check_post=True):
    servers = [Server(ServerSpec(f"s{i}", f"10.0.0.{i + 1}", 80), i) for i in range(5)]
    return create("url_param", servers, {"param": "user", "check-post": check_post})


def head(line=b"POST /login HTTP/1.1", extra=FORM, length=30):
    return line + b"\r\nHost: x\r\n" + extra + b"Content-Length: %d\r\n\r\n" % length


class Req:
    def __init__(self, h: bytes) -> None:
        self.head = h


@pytest.mark.parametrize("h,chunked,want", [
    (head(), False, 30),
    (head(length=100_000), False, 16384),  # HAProxy's first buffer
    (head(extra=b""), False, 30),  # no Content-Type: may be a form
    (head(extra=b"content-type: Application/X-WWW-Form-Urlencoded; charset=utf-8\r\n"), False, 30),
    (head(extra=b"Content-Type: application/json\r\n"), False, 0),
    (head(line=b"PUT /login HTTP/1.1"), False, 0),
    (head(line=b"POST /login?user=q HTTP/1.1"), False, 0),  # the query string has it
    (head(length=0), False, 0),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", True, 1),  # the first chunk
])
def test_body_wanted(h, chunked, want):
    assert sched().body_wanted(h, chunked) == want


def test_no_check_post_wants_nothing_and_a_limit_can_be_given():
    assert sched(None).body_wanted(head(), False) == 0
    assert sched(100).body_wanted(head(length=5000), False) == 100
    with pytest.raises(ValueError, match="check-post"):
        sched("lots")


def test_post_param():
    assert post_param(b"a=1&user=bob&c=3", b"user", True) == b"bob"
    assert post_param(b"user=bob", b"user", True) == b"bob"
    assert post_param(b"xuser=1&user=2", b"user", True) == b"2"
    assert post_param(b"user=&a=1", b"user", True) is None
    assert post_param(b"a=1;user=2", b"user", True) is None  # only '&' splits a body, as HAProxy
    assert post_param(b"user=bob&more", b"user", False) == b"bob"  # ends inside the window
    assert post_param(b"a=1&user=bo", b"user", False) is None  # may go on past the window
    assert dechunk_first(b"8\r\nuser=bob\r\n") == b"user=bob"


def test_the_key_comes_from_the_query_then_the_body():
    s = sched()
    body = PickContext("10.0.0.9", request=Req(head(length=8)), payload=b"user=bob")
    query = PickContext("10.0.0.9", request=Req(b"GET /?user=bob HTTP/1.1\r\n\r\n"))
    assert s.key(body) == s.key(query) == b"bob"
    assert s.pick(body) is s.pick(query)
    both = PickContext("10.0.0.9", request=Req(head(line=b"POST /?user=ann HTTP/1.1", length=8)), payload=b"user=bob")
    assert s.key(both) == b"ann"

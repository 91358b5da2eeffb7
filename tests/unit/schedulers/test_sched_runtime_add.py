"""Servers added and removed at runtime: every registered scheduler picks the newcomer and stops
picking the removed one, without being rebuilt."""
import pytest

from virtserve.engine.backend import Backend
from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers.base import PickContext, names


class Request:
    """What an L7 scheduler reads of the proxy's Exchange: the rebuilt request head."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


def ctx_for(name: str, ip: str, port: int) -> PickContext:
    """A context every kind of algorithm can key on: address, request, destination, RDP cookie."""
    head = b"GET /d/" + ip.encode() + b"?id=" + ip.encode() + b" HTTP/1.1\r\nHost: www." + ip.encode() + b"\r\n\r\n"
    return PickContext(ip, port, request=Request(head), dest_ip=ip,
                       payload=b"\x03\x00\x00\x2c\x27\xe0\x00\x00\x00\x00\x00Cookie: mstshash=" + ip.encode() + b"\r\n")


# Options some algorithms require; `first` fills servers in order, so give them room for one.
OPTIONS = {"hdr": {"header": "host"}, "url_param": {"param": "id"}, "url-param": {"param": "id"}}
MAXCONN = {"first": 1, "ovf": 0}


@pytest.mark.parametrize("name", names())
def test_add_then_remove(name):
    maxconn = MAXCONN.get(name, 0)
    spec = BackendSpec("b", scheduler=name, scheduler_options=tuple(OPTIONS.get(name, {}).items()),
                       servers=(ServerSpec("a", "127.0.0.1", 1, maxconn=maxconn), ServerSpec("b", "127.0.0.1", 2, maxconn=maxconn)))
    backend = Backend(spec)
    sched = backend.scheduler
    new = backend.add_server(ServerSpec("c", "127.0.0.1", 3, weight=2), admin="")
    assert backend.scheduler is sched  # incremental: the same scheduler object
    picks = set()
    for i in range(300):
        s = backend.pick(ctx_for(name, f"10.0.{i // 250}.{i % 250}", 1000 + i))
        if s is None:  # ovf: every server over its weight
            break
        backend.take(s)  # load for the least-connection kinds
        picks.add(s.name)
    assert "c" in picks
    backend.set_admin(new, "maint")
    while new.active:
        backend.drop(new)
    backend.remove_server(new)
    for i in range(300):
        s = backend.pick(ctx_for(name, f"10.0.{i // 250}.{i % 250}", 1000 + i))
        assert s is None or s.name in ("a", "b")
    with pytest.raises(ValueError):
        backend.add_server(ServerSpec("a", "127.0.0.1", 9))

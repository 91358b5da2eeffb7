"""Servers added and removed at runtime: every registered scheduler picks the newcomer and stops
picking the removed one, without being rebuilt."""
import pytest

from virtserve.engine.backend import Backend
from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers.base import PickContext, names


@pytest.mark.parametrize("name", names())
def test_add_then_remove(name):
    spec = BackendSpec("b", scheduler=name, servers=(ServerSpec("a", "127.0.0.1", 1), ServerSpec("b", "127.0.0.1", 2)))
    backend = Backend(spec)
    sched = backend.scheduler
    new = backend.add_server(ServerSpec("c", "127.0.0.1", 3, weight=2), admin="")
    assert backend.scheduler is sched  # incremental: the same scheduler object
    picks = set()
    for i in range(300):
        s = backend.pick(PickContext(f"10.0.{i // 250}.{i % 250}", 1000 + i))
        backend.take(s)  # load for the least-connection kinds
        picks.add(s.name)
    assert "c" in picks
    backend.set_admin(new, "maint")
    while new.active:
        backend.drop(new)
    backend.remove_server(new)
    for i in range(300):
        assert backend.pick(PickContext(f"10.0.{i // 250}.{i % 250}", 1000 + i)).name in ("a", "b")
    with pytest.raises(ValueError):
        backend.add_server(ServerSpec("a", "127.0.0.1", 9))

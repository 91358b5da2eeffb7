"""The raw socket paths (reactor.py, rawio.py, l4/rawrelay.py), where this platform has them.

They need Linux: epoll, SOCK_NONBLOCK, and a kernel that takes RWF_NOWAIT on sockets. Elsewhere
(or with VIRTSERVE_RAWIO=0) `rawio` and `rawrelay` are None here and every bind is served by
the loop's transports, as before the raw paths existed."""
from __future__ import annotations

from typing import Any

try:
    from virtserve.engine import rawio
    from virtserve.engine.l4 import rawrelay
    from virtserve.engine.reactor import reactor_of
except (ImportError, AttributeError):  # no select.epoll, os.RWF_NOWAIT or socket.SOCK_NONBLOCK
    rawio = rawrelay = reactor_of = None  # type: ignore[assignment]


def l4_raw(bind: Any) -> bool:
    """A plain mode tcp bind relayed by l4/rawrelay.py."""
    return rawrelay is not None and rawrelay.serves(bind)


def http_raw(bind: Any) -> bool:
    """A plain HTTP bind whose client connections rawio.py serves."""
    return rawio is not None and rawio.ENABLED and bind.ssl is None and not bind.accept_proxy

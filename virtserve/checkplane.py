"""The health checks of a worker group, run once: in the parent, on backends of its own built from
the same config. Each verdict goes to every worker (virtserve/groupcontrol.py); the alert mails
leave from here only, and the kernel IPVS Director (forward = ipvs|auto) runs here too, so the
kernel table is programmed once and follows these verdicts and the operator's changes."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from virtserve.engine.backend import Backend, Server, backends_for
from virtserve.engine.config.model import Config
from virtserve.engine.health import Health
from virtserve.engine.ipvs.director import Director
from virtserve.engine.state import EngineState

log = logging.getLogger("virtserve.engine")


class CheckPlane:
    """What `Runtime` needs of an engine (backends, frontends, pool, state) so the parent can
    apply the operator's changes to its copy too (the IPVS weights follow them)."""

    def __init__(self, config: Config, publish: Callable[[Backend, Server], None]) -> None:
        self.config = config
        self.publish = publish
        self.state: EngineState | None = None
        self.backends: dict[str, Backend] = {}
        self.frontends: dict[str, Any] = {}  # the workers serve them
        self.pool = None
        self.health: Health | None = None
        self.ipvs: Director | None = None

    def start(self) -> set[str]:
        """Start the checks (and program the kernel); the frontends the kernel serves."""
        self.state = state = EngineState(asyncio.get_running_loop())
        state.start()
        self.backends = backends_for(self.config.backends, {})
        self.ipvs = Director(self.config, self.backends, state.loop)
        in_kernel = self.ipvs.decide(self.config)
        try:
            self.ipvs.apply(self.config, self.backends)
        except Exception:
            self.ipvs.close()
            raise
        self._check()
        return in_kernel

    def reload(self, config: Config) -> None:
        """The new config's backends, keeping the state of the servers that stay (as a worker's
        engine does, so both sides carry over the same verdicts)."""
        assert self.state is not None
        # The workers were told at start which frontends the kernel serves (they bind none of
        # them): a reload may change those services, not move one between kernel and relay.
        if self.ipvs is not None and self.ipvs.decide(config) != self.ipvs.decide(self.config):
            raise RuntimeError("with workers, a reload cannot move a service between the kernel (IPVS) "
                               "and the userspace relay: restart virtserve to apply the new config")
        backends = backends_for(config.backends, self.backends)
        changed = backends != self.backends
        if self.ipvs is not None:
            self.ipvs.apply(config, backends)  # the kernel's table: all or nothing
        self.config, self.backends = config, backends
        if changed:
            self._check()

    def _check(self) -> None:
        assert self.state is not None
        if self.health is not None:
            self.health.stop()
        self.health = Health(self.state, self.backends)
        if self.health.runner is not None:
            self.health.runner.on_result = self.publish
        self.health.start()

    def snapshot(self) -> list[tuple[Backend, Server]]:
        """Every checked server (what a worker needs after it starts or reloads)."""
        return [(b, s) for b in self.backends.values() for s in b.servers
                if b.spec.check_of(s.spec) is not None]

    def close(self) -> None:
        if self.health is not None:
            self.health.stop()
            self.health = None
        if self.ipvs is not None:
            self.ipvs.close()
            self.ipvs = None
        if self.state is not None:
            self.state.stop()

"""Wanted table vs the kernel's → the operations that make them equal (sans-IO).

Only services in `wanted` are looked at: whatever else is in the kernel belongs to someone else
and is never touched. Applying the result twice changes nothing the second time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from virtserve.engine.ipvs.table import Destination, VirtualService


@dataclass(frozen=True, slots=True)
class Op:
    verb: str  # add_service | set_service | del_service | add_dest | set_dest | del_dest
    service: VirtualService
    dest: Destination | None = None

    def __str__(self) -> str:
        target = self.service.describe()
        if self.dest is not None:
            target += f" -> {self.dest.address}:{self.dest.port} weight {self.dest.weight}"
        return f"{self.verb} {target}"


Table = Mapping[tuple, tuple[VirtualService, Iterable[Destination]]]


def index(table: Iterable[tuple[VirtualService, Iterable[Destination]]]) -> dict[tuple, tuple[VirtualService, list[Destination]]]:
    return {svc.key: (svc, list(dests)) for svc, dests in table}


def diff(current: Table, wanted: Iterable[tuple[VirtualService, Iterable[Destination]]]) -> list[Op]:
    ops: list[Op] = []
    for svc, dests in wanted:
        have = current.get(svc.key)
        if have is None:
            ops.append(Op("add_service", svc))
            ops += [Op("add_dest", svc, d) for d in dests]
            continue
        have_svc, have_dests = have
        if have_svc.settings() != svc.settings():
            ops.append(Op("set_service", svc))
        ops += diff_dests(svc, have_dests, dests)
    return ops


def diff_dests(svc: VirtualService, have: Iterable[Destination], want: Iterable[Destination]) -> list[Op]:
    have_by_key = {d.key: d for d in have}
    want_by_key = {d.key: d for d in want}
    ops = [Op("del_dest", svc, d) for key, d in have_by_key.items() if key not in want_by_key]
    for key, d in want_by_key.items():
        old = have_by_key.get(key)
        if old is None:
            ops.append(Op("add_dest", svc, d))
        elif old != d:
            ops.append(Op("set_dest", svc, d))
    return ops

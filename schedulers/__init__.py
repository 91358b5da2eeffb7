"""Load-balancing algorithms behind one interface (see base.py). Importing this package
registers every built-in algorithm under the names users know."""
from virtserve.schedulers import geo, haproxy, hashsched, lblc, least, mh, rr, sh, twos, wlc, wrr  # noqa: F401
from virtserve.schedulers.base import Needs, PickContext, Scheduler, create, lookup, names, register

__all__ = ["Needs", "PickContext", "Scheduler", "create", "lookup", "names", "register"]

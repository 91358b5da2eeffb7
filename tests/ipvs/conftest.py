"""Tests against a real kernel's IPVS table. They run only inside ipvs-vm (a throw-away guest, as
root): tests/integration/test_ipvs_vm.py boots it and runs this directory there with
VIRTSERVE_IPVS_GUEST=1. Anywhere else they skip, so a host's own IPVS table is never touched."""
from __future__ import annotations

import os
import pytest

GUEST = os.environ.get("VIRTSERVE_IPVS_GUEST") == "1"


def pytest_collection_modifyitems(config, items):
    if GUEST:
        return
    skip = pytest.mark.skip(reason="kernel IPVS tests run inside ipvs-vm (tests/integration/test_ipvs_vm.py)")
    for item in items:
        if "tests/ipvs/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture
def ipvs():
    """A client on an empty table, emptied again afterwards."""
    from virtserve.engine.ipvs.client import IpvsClient

    with IpvsClient() as client:
        client.flush()
        yield client
        client.flush()

"""A small MaxMind DB made on the spot with mmdb-writer (a test dependency): nothing downloaded."""
from __future__ import annotations

from pathlib import Path

import pytest


def write_mmdb(path: Path, records: dict[str, dict]) -> Path:
    """CIDR -> record (GeoIP2 Country shape: {"country": {"iso_code": "FR"}, "continent":
    {"code": "EU"}}), written as an IPv6 database holding IPv4 too, as GeoLite2's are."""
    mmdb_writer = pytest.importorskip("mmdb_writer", reason="mmdb-writer is in the test extra")
    netaddr = pytest.importorskip("netaddr")
    writer = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country",
                                    languages=["en"], description="virtserve test")
    for cidr, record in records.items():
        writer.insert_network(netaddr.IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


def country(iso: str, continent: str) -> dict:
    return {"country": {"iso_code": iso}, "continent": {"code": continent}}

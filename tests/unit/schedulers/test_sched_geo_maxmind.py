"""geo with a MaxMind DB (maxminddb): country, then continent, then the default group; the CIDR
table still wins over the database. The DB is written by the test (tests/mmdbhelpers.py)."""
from __future__ import annotations

import pytest
from mmdbhelpers import country, write_mmdb

from virtserve.engine.backend import Server
from virtserve.engine.config.model import ServerSpec
from virtserve.schedulers import PickContext, create

pytest.importorskip("maxminddb", reason="the geo extra: pip install 'virtserve[geo]'")


@pytest.fixture
def db(tmp_path):
    return write_mmdb(tmp_path / "geo.mmdb", {
        "10.1.0.0/16": country("FR", "EU"),
        "10.2.0.0/16": country("DE", "EU"),  # no country rule: its continent decides
        "10.3.0.0/16": {"registered_country": {"iso_code": "US"}, "continent": {"code": "NA"}},
        "10.4.0.0/16": country("JP", "AS"),  # neither: the default group
        "2001:db8:1::/48": country("FR", "EU"),
    })


def servers():
    return [Server(ServerSpec(f"s{i}", f"192.0.2.{i + 1}", 80), i) for i in range(4)]


def geo(db, **extra):
    options = {"maxmind-db": str(db), "countries": ["fr=france", "US=us"], "continents": ["EU=europe"],
               "group-france": ["s0"], "group-europe": ["s1"], "group-us": ["s2"], "group-rest": ["s3"],
               "default": "rest", "inner": "rr", **extra}
    return create("geo", servers(), options)


@pytest.mark.parametrize("ip,server", [
    ("10.1.2.3", "s0"), ("::ffff:10.1.9.9", "s0"), ("2001:db8:1::5", "s0"),
    ("10.2.0.1", "s1"), ("10.3.4.4", "s2"), ("10.4.0.1", "s3"), ("192.168.1.1", "s3"), ("2001:db8:2::1", "s3"),
])
def test_country_then_continent_then_default(db, ip, server):
    sched = geo(db)
    for _ in range(2):  # the second answer comes from the per-address cache
        assert sched.pick(PickContext(ip)).name == server


def test_the_cidr_table_wins_over_the_database(db):
    sched = geo(db, networks=["10.1.5.0/24=us"])
    assert sched.pick(PickContext("10.1.5.7")).name == "s2"
    assert sched.pick(PickContext("10.1.6.7")).name == "s0"


def test_a_down_group_answers_none_as_a_cidr_group_does(db):
    sched = geo(db)
    s0 = sched._groups["france"].servers[0]
    s0.up = False
    sched.down(s0)
    assert sched.pick(PickContext("10.1.2.3")) is None


@pytest.mark.parametrize("change,message", [
    ({"maxmind-db": "/nonexistent/geo.mmdb"}, "maxmind-db '/nonexistent/geo.mmdb'"),
    ({"countries": ["FR"]}, "expected CODE=GROUP"),
    ({"countries": ["FR=nowhere"]}, "group 'nowhere'"),
])
def test_errors_name_the_setting(db, change, message):
    with pytest.raises(ValueError, match=message):
        geo(db, **change)


def test_countries_without_a_database(db):
    with pytest.raises(ValueError, match="need a database"):
        create("geo", servers(), {"countries": ["FR=a"], "group-a": ["s0"]})


def test_not_a_maxmind_file(tmp_path):
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database" * 10)
    with pytest.raises(ValueError, match="maxmind-db"):
        geo(bad)

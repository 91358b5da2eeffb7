"""geo with a MaxMind DB through the real proxy: clients on distinct 127.0.0.0/8 addresses, a
database written by the test that places them in countries and continents, each sent to its
group; the same through a TOML config (the file:line error when the database is missing)."""
from __future__ import annotations

import pytest
from helpers import topology
from l4helpers import hold, naming
from mmdbhelpers import country, write_mmdb

from virtserve.engine.config import ConfigError, load

pytestmark = pytest.mark.timeout(60)
pytest.importorskip("maxminddb", reason="the geo extra: pip install 'virtserve[geo]'")


def database(tmp_path):
    return write_mmdb(tmp_path / "geo.mmdb", {
        "127.0.0.2/32": country("FR", "EU"),
        "127.0.0.3/32": country("DE", "EU"),
        "127.0.0.4/32": country("US", "NA"),
    })


async def test_clients_go_to_their_countrys_group(raw_server, balancer, tmp_path):
    servers = [await raw_server(naming(f"s{i + 1}")) for i in range(3)]
    options = {"maxmind-db": str(database(tmp_path)), "countries": ("FR=fr", "US=us"), "continents": ("EU=eu",),
               "group-fr": ("s1",), "group-eu": ("s2",), "group-us": ("s3",), "inner": "rr"}
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="geo", options=options))
    held = []
    for ip, want in (("127.0.0.2", "s1"), ("127.0.0.3", "s2"), ("127.0.0.4", "s3")):
        for _ in range(3):
            h = await hold(lb, local_ip=ip)
            held.append(h)
            assert h.name == want, ip
    unknown = [await hold(lb, local_ip="127.0.0.9") for _ in range(3)]
    assert {h.name for h in unknown} == {"s1", "s2", "s3"}  # not in the DB: every server
    for h in held + unknown:
        h.close()


def test_toml_reaches_the_database_and_names_the_line_when_it_is_missing(tmp_path):
    db = database(tmp_path)
    text = f"""
[listen.web]
bind = "127.0.0.1:0"
mode = "tcp"
scheduler = "geo"
scheduler-options = {{ maxmind-db = "{db}", countries = ["FR=fr"], group-fr = ["a"] }}
servers = [{{ name = "a", address = "127.0.0.1:9" }}, {{ name = "b", address = "127.0.0.1:10" }}]
"""
    cfg = tmp_path / "ok.toml"
    cfg.write_text(text)
    load(str(cfg))
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(str(db), str(tmp_path / "missing.mmdb")))
    with pytest.raises(ConfigError) as err:
        load(str(bad))
    assert "bad.toml:6" in str(err.value) and "missing.mmdb" in str(err.value)

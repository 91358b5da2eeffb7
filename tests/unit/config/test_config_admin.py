"""TOML [stats] and [log] tables: what they set, and errors with file:line."""
import pytest

from virtserve.engine.config.model import BindSpec, ConfigError, LogSpec, StatsSpec
from virtserve.engine.config.native import parse

BASE = '[listen.web]\nbind = "127.0.0.1:8080"\nservers = [{ address = "127.0.0.1:9001" }]\n'


def test_stats_and_log_tables():
    config = parse(BASE + """
[stats]
bind = "127.0.0.1:8404"
uri = "/stats"
realm = "LB"
auth = ["admin:s3cret", "ro:pw"]
hide-version = true
admin = true
refresh = "5s"
socket = "/run/lb.sock"
socket-level = "operator"

[log]
target = "udp@127.0.0.1:514"
dontlognull = true
facility = "local2"
""", source="lb.toml")
    assert config.stats == StatsSpec(bind=BindSpec("127.0.0.1", 8404), uri="/stats", realm="LB",
                                     auth=(("admin", "s3cret"), ("ro", "pw")), hide_version=True,
                                     admin=True, refresh=5.0, socket="/run/lb.sock", socket_level="operator")
    assert config.log == LogSpec(target="udp@127.0.0.1:514", dontlognull=True, facility="local2")
    assert parse(BASE).stats is None and parse(BASE).log is None


@pytest.mark.parametrize("table, line, message", [
    ('[stats]\nbind = "127.0.0.1:8404"\nuri = "stats"\n', 7, "'uri' in [stats]: expected a path starting with '/'"),
    ('[stats]\nbind = "127.0.0.1:8404"\nauth = "nopassword"\n', 7, "expected 'user:password'"),
    ('[stats]\nbind = "127.0.0.1"\n', 6, "bind in [stats] has no port"),
    ('[stats]\nuri = "/x"\n', 5, "[stats] needs a bind"),
    ('[stats]\nsocket = "/tmp/s"\nsocket-level = "root"\n', 7, "expected one of user, operator, admin"),
    ('[stats]\nbind = "127.0.0.1:1"\nrefrsh = 3\n', 7, "unknown key 'refrsh' in [stats] — did you mean 'refresh'?"),
    ('[log]\ntarget = "udp@nowhere"\n', 6, "a syslog target needs 'udp@host:port'"),
    ('[log]\nformat = "clf"\n', 6, "expected one of auto, httplog, tcplog"),
    ('[log]\nfacility = "local9"\n', 6, "expected one of kern"),
])
def test_errors_name_file_and_line(table, line, message):
    with pytest.raises(ConfigError) as err:
        parse(BASE + "\n" + table, source="lb.toml")
    assert err.value.where == f"lb.toml:{line}"
    assert message in err.value.message

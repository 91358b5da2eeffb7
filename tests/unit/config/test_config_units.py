import math

import pytest

from virtserve.engine.config.units import parse_size, parse_time, split_host_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("100ms", 0.1),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        (".5s", 0.5),
        (" 5s ", 5.0),
        ("0s", 0.0),
        ("5", 5.0),  # a string of digits takes the bare unit too
        (5, 5.0),
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_parse_time_seconds_bare(text, seconds):
    assert parse_time(text, bare_unit="s") == pytest.approx(seconds)


def test_parse_time_milliseconds_bare_as_in_haproxy_cfg():
    assert parse_time("5000", bare_unit="ms") == pytest.approx(5.0)
    assert parse_time(100, bare_unit="ms") == pytest.approx(0.1)
    assert parse_time("2s", bare_unit="ms") == pytest.approx(2.0)  # a unit wins over the bare one


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5x", "bad time unit 'x' in '5x' (units: us, ms, s, m, h, d)"),
        ("5sec", "bad time unit 'sec'"),
        ("5S", "bad time unit 'S'"),
        ("-1s", "time must not be negative, got '-1s'"),
        (-1, "time must not be negative, got -1"),
        ("", "bad time ''"),
        ("s", "bad time 's'"),
        ("1.2.3s", "bad time '1.2.3s'"),
        (True, "expected a time like '5s', got True"),
        (math.inf, "time must be finite"),
        (math.nan, "time must be finite"),
        ([1], "expected a time like '5s', got list"),
    ],
)
def test_parse_time_errors(value, message):
    with pytest.raises(ValueError) as info:
        parse_time(value, bare_unit="s")
    assert message in str(info.value)


def test_parse_time_rejects_unknown_bare_unit():
    with pytest.raises(ValueError, match="bare_unit"):
        parse_time("5", bare_unit="fortnight")


@pytest.mark.parametrize(
    ("value", "size"),
    [("16k", 16384), ("1m", 1 << 20), ("2g", 2 << 30), ("1K", 1024), ("10", 10), (10, 10)],
)
def test_parse_size(value, size):
    assert parse_size(value) == size


def test_parse_size_bare_unit_and_errors():
    assert parse_size(4, bare_unit="k") == 4096
    with pytest.raises(ValueError, match="bad size unit 't'"):
        parse_size("1t")
    with pytest.raises(ValueError, match="bad size '1.5k'"):
        parse_size("1.5k")
    with pytest.raises(ValueError, match="must not be negative"):
        parse_size(-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("fe80::1", ("fe80::1", None)),
        ("app.internal:80", ("app.internal", 80)),
        ("localhost", ("localhost", None)),
        (":80", ("", 80)),
        ("*:80", ("*", 80)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:99999", ("127.0.0.1", 99999)),  # ranges are validate's job
    ],
)
def test_split_host_port(text, expected):
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:", "port '' is not a number"),
        ("::1:80:x", "write an IPv6 address with a port as '[addr]:port'"),
        ("[::1", "missing ']'"),
        ("[::1]80", "expected ':port' after ']'"),
        ("[127.0.0.1]:80", "is not an IPv6 address"),
        ("bad host:80", "'bad host' is not a host name or IP address"),
        ("127.0.0.1:８０", "is not a number"),  # fullwidth digits are digits to str.isdigit
    ],
)
def test_split_host_port_errors(text, message):
    with pytest.raises(ValueError) as info:
        split_host_port(text)
    assert message in str(info.value)

"""Value syntax shared by every config format: times, sizes, host:port.

Each function raises ValueError with a message fit for a user; the format's parser adds the
"file:line". The formats differ only in what a bare number means (TOML: seconds, haproxy.cfg:
milliseconds), so that is a required keyword rather than a guess.
"""
from __future__ import annotations

import ipaddress
import re

# HAProxy's time units, in seconds.
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# HAProxy's size suffixes are binary multiples.
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def parse_time(value: str | int | float, *, bare_unit: str) -> float:
    """A duration in seconds from "5s", "100ms", "1.5s", "2m", "1h", "1d", "250us".

    A number without a unit (a TOML number, or a string of digits) is in `bare_unit`.
    """
    if bare_unit not in TIME_UNITS:
        raise ValueError(f"unknown bare_unit {bare_unit!r}")
    if isinstance(value, bool):  # bool is an int subclass: `timeout = true` is a mistake
        raise ValueError(f"expected a time like '5s', got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), bare_unit
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"time must be finite, got {value!r}")
        if number < 0:
            raise ValueError(f"time must not be negative, got {value!r}")
        return number * TIME_UNITS[unit]
    if not isinstance(value, str):
        raise ValueError(f"expected a time like '5s', got {type(value).__name__}")
    match = _NUMBER_UNIT.fullmatch(value)
    if match is None:
        if value.strip().startswith("-"):
            raise ValueError(f"time must not be negative, got {value!r}")
        raise ValueError(f"bad time {value!r}: expected a number with a unit, like '5s' or '100ms'")
    number, unit = match.group(1), match.group(2)
    scale = TIME_UNITS.get(unit or bare_unit)
    if scale is None:
        raise ValueError(
            f"bad time unit {unit!r} in {value!r} (units: {', '.join(TIME_UNITS)})"
        )
    return float(number) * scale


def parse_size(value: str | int, *, bare_unit: str = "") -> int:
    """A size in bytes from "16k", "1m", "2g" or a plain number (in `bare_unit`)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a size like '16k', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value * SIZE_UNITS[bare_unit]
    match = re.fullmatch(r"\s*([0-9]+)\s*([a-zA-Z]?)\s*", value)
    if match is None:
        raise ValueError(f"bad size {value!r}: expected a whole number, optionally with k, m or g")
    scale = SIZE_UNITS.get((match.group(2) or bare_unit).lower())
    if scale is None:
        raise ValueError(f"bad size unit {match.group(2)!r} in {value!r} (units: k, m, g)")
    return int(match.group(1)) * scale


def split_host_port(text: str) -> tuple[str, int | None]:
    """("host", port) from "host:port", "[v6]:port", "host", "[v6]", "v6" or ":port".

    The port is None when absent; the host is "" or "*" for a wildcard (":80", "*:80"), which
    the caller maps to what it means there. Ranges are the validator's job.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an address string like '127.0.0.1:80', got {text!r}")
    text = text.strip()
    port_text: str | None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"bad address {text!r}: missing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else None
        if not _is_ip(host, 6):
            raise ValueError(f"bad address {text!r}: {host!r} in brackets is not an IPv6 address")
    elif text.count(":") > 1:
        # A bare IPv6 address cannot carry a port: the last group would be ambiguous.
        if not _is_ip(text, 6):
            raise ValueError(f"bad address {text!r}: write an IPv6 address with a port as '[addr]:port'")
        host, port_text = text, None
    else:
        host, sep, port_text = text.partition(":")
        port_text = port_text if sep else None
        if host not in ("", "*") and not _HOSTNAME.fullmatch(host):
            raise ValueError(f"bad address {text!r}: {host!r} is not a host name or IP address")
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"bad address {text!r}: port {port_text!r} is not a number")
    return host, int(port_text)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False

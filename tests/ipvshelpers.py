"""Helpers for the kernel IPVS tests (tests/ipvs, run inside ipvs-vm)."""
from __future__ import annotations

import subprocess


def ipvsadm(*args: str) -> str:
    """The oracle: ipvsadm's own view of the same table."""
    return subprocess.run(["ipvsadm", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def sh(*commands: str) -> None:
    """Run shell commands in the guest (network namespaces, addresses); fail loudly."""
    for command in commands:
        subprocess.run(command, shell=True, check=True, timeout=30)

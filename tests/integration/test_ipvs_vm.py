"""Runs tests/ipvs inside ipvs-vm: one throw-away guest with Debian's kernel and its ip_vs
modules, one pytest session there (ipvsadm as the oracle). Skips with the reason where the VM
cannot run."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(600)

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOL = os.environ.get("IPVS_VM", str(ROOT.parent.parent / "shared" / "tools" / "ipvs-vm"))


def _tool() -> str:
    for candidate in (TOOL, shutil.which("ipvs-vm"), "/work/shared/tools/ipvs-vm"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("ipvs-vm is not installed here (it boots the kernel the IPVS tests need)")


def test_kernel_ipvs_suite_in_vm():
    tool = _tool()
    prepared = subprocess.run([tool, "--prepare"], capture_output=True, text=True, timeout=300)
    if prepared.returncode != 0:
        pytest.skip(f"ipvs-vm cannot run here: {(prepared.stderr or prepared.stdout).strip()[-400:]}")
    env = {**os.environ, "VIRTSERVE_IPVS_GUEST": "1", "IPVS_VM_TIMEOUT": "540"}
    run = subprocess.run([tool, "--", sys.executable, "-m", "pytest", "tests/ipvs", "-q", "-p", "no:cacheprovider",
                          "-o", "addopts=--import-mode=importlib -ra"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=570)
    if run.returncode == 125:
        pytest.skip(f"ipvs-vm could not boot: {run.stderr.strip()[-400:]}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]

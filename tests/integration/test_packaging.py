"""The wheel holds only the virtserve package, and it imports from anywhere once installed."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, timeout=150)
    (whl,) = out.glob("virtserve-*.whl")
    return whl


def test_wheel_contains_nothing_outside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if not n.startswith(("virtserve/", "virtserve-"))]
    assert outside == []
    for module in ("virtserve/engine/engine.py", "virtserve/schedulers/wrr.py",
                   "virtserve/checks/__init__.py", "virtserve/benchmarks/__init__.py",
                   "virtserve/cli.py", "virtserve/pytest_plugin.py"):
        assert module in names
    assert not any(n.startswith("virtserve/tests") for n in names)


def test_installed_wheel_imports_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import virtserve.engine, virtserve.schedulers, virtserve.checks, virtserve.engine.engine;"
            "print(virtserve.engine.__file__); print(sorted(virtserve.schedulers.names()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env={"PYTHONPATH": str(target)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    engine_file, names = done.stdout.splitlines()
    assert engine_file.startswith(str(target))
    assert "wrr" in names and "sh" in names


def test_console_script_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "virtserve", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "demo" in done.stdout and "check" in done.stdout

"""Headless Chromium for the demo's browser test: Debian's `chromium` and `chromedriver`, driven by selenium.

Nothing is downloaded at run time: the browser and its driver are the system's (`apt-get install chromium
chromium-driver`, which `.ci/run` does); when they are missing the test fails and says how to install them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2000",
)
INSTALL_HINT = "apt-get install -y chromium chromium-driver (as .ci/run does)"


def _system_binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' / '.join(names)} not found: the browser test needs it; install it with {INSTALL_HINT}")


def chromium(user_data_dir: Path):
    """A headless Chromium WebDriver on a fresh profile (fails the test when the browser is not installed)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -c constraints.txt -e '.[demo]'")
    binary = _system_binary("chromium", "chromium-browser")
    driver_path = _system_binary("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not look for a driver online
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_demo(
    args: list[str], tmp_dir: Path, log: Path, timeout: float = 180.0
) -> tuple[subprocess.Popen, str]:
    """`rest-hf demo ARGS` on a free 127.0.0.1 port, its temporary files under `tmp_dir`; returns (process, url)
    once the page answers."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("GRADIO_TEMP_DIR", None)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "rest_hf", "demo", "--port", str(port), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"rest-hf demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    stop(process)
    pytest.fail(f"rest-hf demo did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

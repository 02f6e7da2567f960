"""scripts/setup on a machine where another apt is running: it waits for dpkg's lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[1]
DPKG_FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")


@pytest.mark.skipif(os.geteuid() != 0, reason="holds dpkg's lock: root only")
def test_apt_step_waits_for_another_apt_instead_of_failing() -> None:
    # Held as apt and dpkg hold it (an fcntl write lock), as unattended-upgrades would.
    fd = os.open(DPKG_FRONTEND_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # mosquitto is installed already (the test fixtures need it): apt has nothing to do but
        # must still take the lock to find that out.
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "apt-install"), "mosquitto"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3)
        assert proc.poll() is None, f"apt did not wait for the lock: {proc.communicate()}"
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)
    wait_until(lambda: proc.poll() is not None, 120, "apt to finish once the lock was free")
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "waiting up to" in out

"""The DDS environment of ROS 2 processes on this host, ROS_DOMAIN_IDs and Fast DDS shared memory.

What every process this package starts needs (docs/ros.md, "DDS on pip installs"):

* ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless the caller set a range,
* a ROS_DOMAIN_ID (the caller's, or one picked per run for isolated runs such as the demo),
* FASTDDS_DEFAULT_PROFILES_FILE = the shipped profile raising the shared-memory segment to 64 MB
  and its port queue to 4096 slots, without which best-effort VGA images are silently lost
  between processes (and frames above ~14 MB at random: docs/ros.md).

Shared by the runner (child processes) and the probe (an in-process participant). Dead
participants leave files in /dev/shm; `remove_stale_shm` removes those whose owner is gone.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
import random

from fusanet_ros.startup.launch_description import fastdds_profile

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
# ROS 2 safe ids on Linux are 0-101 (above, ports collide with the ephemeral range); 0 is the default, kept for users
DOMAIN_RANGE = (1, 101)


def dds_env(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ROS 2 processes on this host (see the module docstring).

    Args:
        domain_id: ROS_DOMAIN_ID to force; None keeps the caller's (ROS default 0 if unset).
        base: environment to start from (default os.environ).
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    profile = fastdds_profile()
    if not env.get("FASTDDS_DEFAULT_PROFILES_FILE") and Path(profile).is_file():
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    env["PYTHONUNBUFFERED"] = "1"  # node logs appear as they happen
    return env


def pick_domain_id(rng: random.Random | None = None) -> int:
    """Pick a random ROS_DOMAIN_ID in DOMAIN_RANGE whose Fast DDS ports no live process holds."""
    rng = rng or random.Random()
    busy = {name for name in shm_files() if name.startswith("fastdds_port") and segment_held(name)}
    for _ in range(50):
        domain = rng.randint(*DOMAIN_RANGE)
        base = 7400 + 250 * domain  # RTPS port mapping: PB + DG * domain (+ offsets below 250)
        if not any(f"fastdds_port{port}" in busy for port in range(base, base + 250)):
            return domain
    return rng.randint(*DOMAIN_RANGE)


def shm_files() -> set[str]:
    """Names of the Fast DDS files in /dev/shm."""
    try:
        return {p.name for p in SHM_DIR.iterdir() if "fastdds" in p.name}
    except OSError:
        return set()


def segment_held(name: str) -> bool:
    """Return True while a live participant holds the lock file of a Fast DDS segment or port."""
    lock = SHM_DIR / (name if name.endswith("_el") else f"{name}_el")
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_stale_shm(candidates: set[str]) -> list[str]:
    """Remove Fast DDS files among `candidates` whose owner is gone (lock file not held).

    Only files that appeared during our run are candidates, so other users' segments are never
    touched; a segment still locked by a live process is kept.
    """
    removed = []
    for name in sorted(candidates):
        if name.startswith("sem.fastdds_port"):
            port = name[len("sem."):].removesuffix("_mutex")
            stale = port not in candidates or not segment_held(port)
        elif name.startswith("fastdds_"):
            stale = not segment_held(name)
        else:
            continue
        if stale:
            try:
                (SHM_DIR / name).unlink()
                removed.append(name)
            except FileNotFoundError:
                pass
            except OSError as err:
                log.debug("cannot remove %s: %s", name, err)
    return removed

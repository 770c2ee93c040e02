"""Keep DDS traffic of tests on this machine, each test run in a ROS domain of its own."""

from __future__ import annotations

import os

# Discovery stays on the loopback interface: the machine has real network interfaces.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)


def domain_id_for_this_run() -> int:
    """Return a ROS domain id derived from the process id, so parallel runs do not meet.

    Domain ids 1..101 are safe for the default DDS port mapping.
    """
    return 1 + os.getpid() % 101

"""Fixtures shared by the ROS tests; rclpy is imported by those alone.

The tests that need no ROS (protocol, CLI, captures, virtual BMS) run where rclpy is not
installed, as on a robot without ROS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from ros_env import domain_id_for_this_run

if TYPE_CHECKING:
    from rclpy.context import Context


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """An rclpy context in this run's own ROS domain, with localhost-only discovery."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=domain_id_for_this_run())
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)

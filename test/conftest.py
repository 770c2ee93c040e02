"""Fixtures shared by the ROS tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from ros_env import domain_id_for_this_run


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """An rclpy context in this run's own ROS domain, with localhost-only discovery."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id_for_this_run())
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)

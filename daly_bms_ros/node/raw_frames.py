"""The ``raw_frames`` topic: every request and notification, for ``ros2 bag record``."""

from __future__ import annotations

from collections.abc import Mapping

from rclpy.node import Node

from daly_bms_ros.msg import RawFrame


class RawFramePublisher:
    """A client tap (see ``daly_bms_ros.link.client.Tap``) that publishes the raw bytes.

    Called in the BLE thread: rclpy publishers may be used from any thread, and a publish
    returns at once.
    """

    def __init__(self, node: Node, frame_id: str) -> None:
        self._node = node
        self._frame_id = frame_id
        self.publisher = node.create_publisher(RawFrame, "raw_frames", 100)

    def _publish(self, direction: int, data: bytes) -> None:
        message = RawFrame(direction=direction, data=list(data))
        message.header.stamp = self._node.get_clock().now().to_msg()
        message.header.frame_id = self._frame_id
        self.publisher.publish(message)

    def connected(self, device: Mapping[str, object]) -> None:
        """Nothing to publish: the topic carries bytes only."""

    def sent(self, data: bytes) -> None:
        """Publish a request."""
        self._publish(RawFrame.REQUEST, data)

    def received(self, data: bytes) -> None:
        """Publish a notification."""
        self._publish(RawFrame.NOTIFICATION, data)

    def detected(self, variant: str, status_registers: int) -> None:
        """Nothing to publish: the topic carries bytes only."""

    def disconnected(self, reason: str) -> None:
        """Nothing to publish: the topic carries bytes only."""

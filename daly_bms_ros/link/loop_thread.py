"""An asyncio event loop in a thread of its own, so BLE waits never block the ROS executor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """Run one asyncio loop in a daemon thread and hand coroutines to it from other threads."""

    def __init__(self, name: str = "daly_bms_ble") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        # Let cancelled tasks finish their clean-up before the loop closes.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def start(self) -> None:
        """Start the thread; call once."""
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coroutine`` on the loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Run a plain callable in the loop thread (thread-safe)."""
        self._loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float) -> bool:
        """Stop the loop and wait up to ``timeout`` seconds; return whether the thread ended."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        return not self._thread.is_alive()

"""HTTP/JSON bridge: the latest sample of each battery, from memory, for tools that speak HTTP.

``store``, ``views``, ``http_server`` and ``files`` need no ROS: ``daly-bms serve`` feeds them from
BLE directly. ``node`` feeds them from the ROS topics of one or more battery nodes.
"""

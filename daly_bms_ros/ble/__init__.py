"""BLE client for Daly BMS on bleak, free of ROS: transport, request/response, link supervision."""

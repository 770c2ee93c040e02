"""Talking to one Daly BMS, free of ROS: transports, the request/response client, supervision."""

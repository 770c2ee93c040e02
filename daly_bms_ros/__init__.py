"""Daly smart BMS driver for ROS 2: protocol core, BLE client, node, CLI and virtual BMS.

The generated message module ``daly_bms_ros.msg`` is installed by the interface build into the
installed copy of this package; extending ``__path__`` lets a source checkout that stands first
on ``sys.path`` (tests run from the repository root) still find it.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

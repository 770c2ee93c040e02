"""Virtual Daly BMS: a BLE peripheral on the BlueZ D-Bus API that answers like a real one."""

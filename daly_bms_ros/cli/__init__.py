"""The ``daly-bms`` command line tool."""

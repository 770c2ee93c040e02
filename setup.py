"""pip's build of the package takes its version from package.xml: the version lives there alone.

ROS builds the package with colcon (CMakeLists.txt + package.xml) and never runs this file.
"""

import re
from pathlib import Path

from setuptools import setup

PACKAGE_XML = Path(__file__).resolve().with_name("package.xml")
VERSION = re.search(r"<version>\s*([^<\s]+)\s*</version>", PACKAGE_XML.read_text(encoding="utf-8"))
if VERSION is None:
    raise SystemExit(f"no <version> in {PACKAGE_XML}")
setup(version=VERSION.group(1))

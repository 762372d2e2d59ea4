"""``python -m pytest_vramcap.cli``."""

import sys

from . import main

sys.exit(main())

"""``python -m oaprobe``: the same command line as ``oaprobe``."""

import sys

from oaprobe.cli import main

sys.exit(main())

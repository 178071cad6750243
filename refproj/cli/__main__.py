"""``python -m refproj.cli``."""

import sys

from refproj.cli import main

sys.exit(main())

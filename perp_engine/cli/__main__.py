"""``python -m perp_engine.cli``: the ``perp`` command without the console script."""

import sys

from . import main

sys.exit(main())

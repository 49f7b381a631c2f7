"""``python -m edgetwin``: the same as the ``edgetwin`` command."""

import sys

from edgetwin.daemon.cli import main

sys.exit(main())

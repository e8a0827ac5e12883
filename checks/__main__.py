"""``python -m checks``: see :mod:`checks.run`."""

import sys

from checks.run import main

sys.exit(main())

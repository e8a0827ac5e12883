"""``python -m jacverify.cli``: the ``jacverify`` command."""

import sys

from jacverify.cli import main

sys.exit(main())

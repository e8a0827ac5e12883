"""``python -m jacverify.cli``: the ``jacverify`` command."""

from jacverify.cli import console_main

console_main()

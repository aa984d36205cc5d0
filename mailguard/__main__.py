"""``python -m mailguard``: the same as the ``mailguard`` command."""

from mailguard.cli import main

main()

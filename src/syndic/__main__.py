"""``python -m syndic`` is the ``syndic`` command."""

from syndic.cli.main import main

main()

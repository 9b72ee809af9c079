"""``python -m jointspace.cli``: the same as the ``jointspace`` command."""

from jointspace.cli.main import main

main()

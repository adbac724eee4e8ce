"""``python -m muckwatch``: the same as the ``muckwatch`` console script."""

from muckwatch.cli import main

raise SystemExit(main())

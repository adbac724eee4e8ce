"""``python -m muckwatch.cli`` still works now that the CLI is a package (the same as
``python -m muckwatch`` and the ``muckwatch`` console script)."""

from muckwatch.cli import main

raise SystemExit(main())

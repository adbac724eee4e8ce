"""Files of the source checkout that runtime defaults name, found without the dev tooling.

muckwatch runs from its source checkout (``scripts/setup.sh`` installs it editable), and two
runtime defaults point into that checkout: ``[city] dir = "data/sample-city"`` and the
production broker template ``deploy/mosquitto.production.conf``. Both are looked up next to
this package — the checkout it was imported from, computed from this module's own file — so
the runtime never asks the development services (``devservices``) where the checkout is. In a
copy installed without the checkout these files simply do not exist there, and the callers
say which path they wanted.
"""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
BROKER_TEMPLATE = CHECKOUT / "deploy" / "mosquitto.production.conf"


def city_dir(configured: str) -> str:
    """The configured city directory. A relative one that does not exist in the current
    directory is looked up in the checkout too, so ``muckwatch run`` with the default works
    from any directory; otherwise the configured path comes back unchanged."""
    path = Path(configured)
    if not path.is_absolute() and not path.exists() and (CHECKOUT / path).is_dir():
        return str(CHECKOUT / path)
    return configured

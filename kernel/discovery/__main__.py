"""``python -m kernel.discovery``: started by the ``kernel`` command, never by hand (see ``child``)."""

from kernel.discovery.child import main

main()

"""``python -m kernel.plugin_scan``: started by the ``kernel`` command, never by hand (see ``child``)."""

from kernel.plugin_scan.child import main

main()

"""``python -m kernel.cli``: the ``kernel`` command."""

import sys

from kernel.cli import main

sys.exit(main())

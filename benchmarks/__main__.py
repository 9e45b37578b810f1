import sys

from kernel_benchmarks.cli import main

sys.exit(main())

"""``python -m harness``: runs :func:`harness.cli.main` and holds nothing else."""

import sys

from harness.cli import main

sys.exit(main())

"""``python -m senseimig_dagster.cli``: the ``senseimig`` command."""

import sys

from senseimig_dagster.cli import main

sys.exit(main())

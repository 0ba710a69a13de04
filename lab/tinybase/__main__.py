"""``python -m lab.tinybase``: the tiny base's pretraining run (see :mod:`lab.tinybase.cli`)."""

import sys

from lab.tinybase.cli import main

sys.exit(main())

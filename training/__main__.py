"""`python -m training ...`: the trainer's subcommands alone (train, eval, optimize, export)."""

import sys

from training.cli import main

sys.exit(main())

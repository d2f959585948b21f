"""`python -m keras_models ...`: the `keras-models` command line."""

import sys

from keras_models.cli import main

sys.exit(main())

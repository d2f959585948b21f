import sys

from keras_models.cli import main

sys.exit(main())

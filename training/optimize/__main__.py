"""Child-process entry: `python -m training.optimize OPTIONS_JSON ERROR_FILE` (see `optimize()`)."""

import json
import os
import sys
from pathlib import Path

from keras_models.files import quiet_stderr


def main() -> int:
    options, error_file = json.loads(sys.argv[1]), Path(sys.argv[2])
    try:
        with quiet_stderr():  # TensorFlow / tfmot import chatter
            from training.optimize import OptimizeOptions, job
        job.run(OptimizeOptions(**options))
    except Exception as e:  # expected failures become the parent's one-line error
        if os.environ.get("KERAS_MODELS_DEBUG"):
            raise
        error_file.write_text(str(e) if _expected(e) else f"{type(e).__name__}: {e}")
        return 2
    return 0


def _expected(e: Exception) -> bool:
    from keras_models.export import ExportError
    from training.config import ConfigError
    from training.data import DataError
    from training.optimize import OptimizeError

    return isinstance(e, (OptimizeError, ConfigError, DataError, ExportError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())

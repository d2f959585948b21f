"""keras-models trainer: `training.fit(TrainConfig(...))`, `keras-models train`, `python -m training`."""

from training.config import TrainConfig


def fit(config: TrainConfig, **kwargs) -> dict:
    """Train per `config` (see `TrainConfig`); returns the run summary."""
    from training.trainer import fit as _fit

    return _fit(config, **kwargs)


def evaluate(**kwargs) -> dict:
    """Top-1/top-5 of a weights file on a dataset's validation split (see `training.evaluate.evaluate`)."""
    from training.evaluate import evaluate as _evaluate

    return _evaluate(**kwargs)


__all__ = ["TrainConfig", "fit", "evaluate"]

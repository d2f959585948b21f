"""Every model family, registered on import, and the timm-style factory over them.

Add a family by writing `keras_models/models/<family>.py` (a block table, a spec function,
`register(...)` calls) and importing it here.
"""

from keras_models.models import efficientnet, rexnet  # noqa: F401  (each registers its entries)
from keras_models.models.factory import (
    create_from_entry,
    create_model,
    eval_settings,
    get_entry,
    list_models,
    load_model,
    model_info,
)

__all__ = ["create_from_entry", "create_model", "eval_settings", "get_entry", "list_models", "load_model", "model_info"]

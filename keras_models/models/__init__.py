"""The catalogue: every model family, registered on import, and the registry's lookups over them.

Add a family by writing `keras_models/models/<family>.py` (a block table, a spec function,
`register(...)` calls) and importing it here; its public constructor goes in
`keras_models/applications.py`. Building is `keras_models.factory`'s job.
"""

from keras_models.models import efficientnet, rexnet  # noqa: F401  (each registers its entries)
from keras_models.registry import eval_settings, find_entry, get_entry, list_models, resolve

__all__ = ["eval_settings", "find_entry", "get_entry", "list_models", "resolve"]

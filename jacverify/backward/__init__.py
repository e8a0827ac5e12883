"""The backward-model builder: rule base classes, the registry, native rules, the cloner.

Importing it registers ``BackwardModel`` and every native rule with Keras, so that
``keras.saving.load_model`` reads saved backward models.
"""

from jacverify.backward import clone as _clone  # noqa: F401 - registers BackwardModel
from jacverify.backward import rules as _rules  # noqa: F401 - registers the native rules

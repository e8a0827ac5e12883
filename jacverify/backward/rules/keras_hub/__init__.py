"""Rules for keras_hub layers that cannot be traced (see docs/builder.md).

The registry imports this package once ``keras_hub`` has been imported (it is optional), and
lists its rules under the source ``package:keras_hub``. Every other keras_hub layer in the
tested backbones is traced: its parts' rules build its backward.
"""

from jacverify.backward.rules.keras_hub import (  # noqa: F401
    patch_embedding,
    position_embedding,
)

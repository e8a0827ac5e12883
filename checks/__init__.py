"""A fault corpus for jacverify's checker: custom and native layers with correct and
deliberately wrong backward rules, each declaring the verdict the checker must reach.

``python -m checks`` runs every case over several seeds and reports the detection rate, the
exact-verdict rate and the false alarms (see ``checks/README.md``).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

"""The tutorial's rules as written, registered for its layers: a ``--rules`` module.

``BackwardClip`` is the tutorial's own rule for ``Clip``, which is wrong outside ``[vmin,
vmax]``; ``jacverify check clip_model.keras --rules jacverify.examples.tutorial_rules`` finds it.
"""

from jacverify.backward.registry import register_backward
from jacverify.examples.tutorial import BackwardClip, BackwardPlusConstant, Clip, PlusConstant

register_backward(PlusConstant)(BackwardPlusConstant)
register_backward(Clip)(BackwardClip)

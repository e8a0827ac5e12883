"""The tutorial's rules with ``Clip``'s corrected, registered for its layers: a ``--rules``
module (``BackwardClipCorrect`` passes ``g`` inside ``[vmin, vmax]`` and 0 outside)."""

from jacverify.backward.registry import register_backward
from jacverify.examples.tutorial import (
    BackwardClipCorrect,
    BackwardPlusConstant,
    Clip,
    PlusConstant,
)

register_backward(PlusConstant)(BackwardPlusConstant)
register_backward(Clip)(BackwardClipCorrect)

"""How an image file becomes the model's input, in Pillow and numpy only (no torch).

* :func:`to_rgb`: any mode Pillow opens as the 8-bit RGB picture it shows;
* :class:`SafeImageReader`: reads files without ever raising (unreadable ones are counted);
* :func:`eval_array`: the deterministic evaluation transform (resize, crop, normalise);
* :class:`Normalisation`: a backbone's mean/std, filter and crop (:data:`IMAGENET` by default).

Training-time evaluation and the query path of ``search`` / ``serve`` share these; with an
ONNX model the query path imports neither torch nor torchvision.
"""

from lossensemble.preprocess.normalisation import IMAGENET, Normalisation
from lossensemble.preprocess.pixels import to_rgb
from lossensemble.preprocess.reader import SafeImageReader
from lossensemble.preprocess.transform import IMAGENET_MEAN, IMAGENET_STD, KINDS, describe_eval, eval_array

__all__ = ["IMAGENET", "IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "Normalisation", "SafeImageReader", "describe_eval",
           "eval_array", "to_rgb"]

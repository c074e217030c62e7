"""The semshare runtime: load a model once, segment camera pairs from your own code.

    from semshare.runtime import Segmenter
    seg = Segmenter.load("tightly.onnx")         # or a .pth (+ variant=...), or a TensorRT .engine
    mask120, mask60 = seg(img120, img60)          # uint8 RGB images of any size -> class masks at that size

``semshare infer``, ``semshare bench`` and ``semshare demo`` run their models through this package. Importing
it is cheap: torch, ONNX Runtime and TensorRT load when a model does.
"""

from semshare.runtime.segmenter import Segmentation, Segmenter

__all__ = ["Segmentation", "Segmenter"]

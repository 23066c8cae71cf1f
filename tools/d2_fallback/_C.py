"""Stand-in for ``detectron2._C``, installed by freqdet's set-up (``tools/setup.sh``).

This Detectron2 is the Python part of Detectron2 0.6, taken from PyPI's ``pb1-detectron2``
source distribution (whose C++/CUDA sources are missing, so it cannot be built) and
installed without its compiled extension. Mask R-CNN and Faster R-CNN run without it:
torchvision supplies ``roi_align`` and ``nms``.

What is missing are the compiled ops: deformable convolution, rotated boxes
(``box_iou_rotated``, ``roi_align_rotated``) and the C++ COCO evaluation (use
``COCOEvaluator(..., use_fast_impl=False)``). Calling any of them raises a RuntimeError
that names the op. The only members that answer are the three build queries
``get_compiler_version``, ``get_cuda_version`` and ``has_cuda``, so that
``detectron2.utils.collect_env`` (called by ``default_setup``) reports this stand-in
instead of crashing.

For the real ops, install Detectron2 from source (it needs a compiler, and nvcc for GPU
ops): https://detectron2.readthedocs.io/en/latest/tutorials/install.html
"""

FREQDET_STANDIN = True

_HINT = (
    "detectron2._C.{name} is a compiled Detectron2 op, and this Detectron2 was installed by "
    "freqdet's set-up without its C++/CUDA extension (pb1-detectron2 0.6 ships no C++ sources). "
    "Install Detectron2 from source to use it: "
    "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
)


def _unavailable(name):
    def op(*args, **kwargs):
        raise RuntimeError(_HINT.format(name=name))

    op.__name__ = name
    op.__doc__ = f"Unavailable compiled op detectron2._C.{name}: calling it raises RuntimeError."
    return op


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _unavailable(name)


def get_compiler_version():
    return "none: freqdet stand-in for detectron2._C, no compiled ops"


def get_cuda_version():
    return "none: freqdet stand-in for detectron2._C"


def has_cuda():
    return False

"""Synthetic demo data that trains on a CPU: real JPEG files of shapes filled with gratings.

:mod:`.coco_shapes` (COCO instance annotations; ``freqdet_demo_train`` / ``_val`` in
Detectron2) and :mod:`.folder_shapes` (an ImageFolder for the classifier), both drawn by
:mod:`.drawing` into ``$FREQDET_CACHE`` on first use (:mod:`.cache`); and :mod:`.photos`,
the real photos that installed packages ship. No Detectron2 needed.
"""

from .cache import cache_root
from .coco_shapes import prepare_demo
from .folder_shapes import prepare_demo_folder
from .photos import packaged_photos

__all__ = ["cache_root", "packaged_photos", "prepare_demo", "prepare_demo_folder"]

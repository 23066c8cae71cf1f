"""Synthetic demo data that trains on a CPU: real JPEG files of shapes filled with gratings.

:mod:`.detection` (COCO instance annotations; ``freqdet_demo_train`` / ``_val`` in
Detectron2) and :mod:`.classification` (an ImageFolder), both drawn by :mod:`.drawing`
into ``$FREQDET_CACHE`` on first use (:mod:`.cache`); and :mod:`.photos`, the real photos
that installed packages ship. No Detectron2 needed.
"""

from .cache import cache_root
from .classification import prepare_demo_folder
from .detection import prepare_demo
from .photos import packaged_photos

__all__ = ["cache_root", "packaged_photos", "prepare_demo", "prepare_demo_folder"]

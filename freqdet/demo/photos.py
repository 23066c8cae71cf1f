"""Real photographs that ship inside installed packages, for statistics, benchmarks and examples.

matplotlib (a freqdet dependency) ships ``grace_hopper.jpg`` (512x600); scikit-learn, where
installed (freqdet's test extra), ships ``china.jpg`` and ``flower.jpg`` (640x427).
"""

import os
from typing import List


def packaged_photos() -> List[str]:
    """Paths of the photos the installed packages ship (Grace Hopper first, always there)."""
    import matplotlib.cbook

    paths = [str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    try:
        import sklearn
    except ImportError:
        return paths
    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    return paths + [os.path.join(folder, name) for name in ("china.jpg", "flower.jpg")]

"""freqdet: Detectron2 models that learn in the frequency domain.

Detectron2 itself is not on PyPI, so it is not listed here: install it from source
(https://detectron2.readthedocs.io/en/latest/tutorials/install.html), or let
``tools/setup.sh`` install its fallback (see docs/setup.md).
"""

import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# What each optional C extension gives, and what is lost without it.
EXTENSIONS = {
    "freqdet.io._jpeg": (
        "the JPEG coefficient reader",
        "INPUT.DCT.SOURCE 'jpeg' will be unavailable. Install libjpeg's headers (Debian: apt-get install "
        "libjpeg-dev) and reinstall to get it.",
    ),
    "freqdet.dct._banded": (
        "the frequency transform's CPU kernel",
        "the data loader will use the transform's torch path (the same numbers, slower). Install a C "
        "compiler and Python's headers (Debian: apt-get install gcc python3-dev) and reinstall to get it.",
    ),
}


class OptionalBuildExt(build_ext):
    """Build the C extensions where a compiler (and, for freqdet.io._jpeg, libjpeg's headers) is there.

    Without them freqdet works: see EXTENSIONS for what each one adds. A failed build says so on
    stderr, and leaves no earlier build of that extension in the source tree (an editable install's)
    to be imported in its place, so that tools/setup.sh and the tests see it missing.
    """

    def run(self):
        self.in_tree = self.inplace  # setuptools clears inplace while it builds
        try:
            super().run()
        except Exception as e:  # setuptools raises several unrelated types for a failed compile
            self._warn(None, e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            self._warn(ext.name, e)
            ext.optional = True  # setuptools then copies nothing of it into the source tree
            stale = os.path.join(os.path.dirname(os.path.abspath(__file__)), self.get_ext_filename(ext.name))
            if self.in_tree and os.path.exists(stale):
                os.remove(stale)
                sys.stderr.write(f"freqdet: removed {stale}, an earlier build, so that it is not used\n")

    @staticmethod
    def _warn(name, error):
        what, loss = EXTENSIONS.get(name, ("the C extensions", "freqdet falls back to its Python paths."))
        sys.stderr.write(f"freqdet: WARNING: not building {what} ({error}); {loss}\n")


def version() -> str:
    with open(os.path.join(os.path.dirname(__file__), "freqdet", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("freqdet/__init__.py has no __version__")


setup(
    name="freqdet",
    version=version(),
    description="Detectron2 models that learn in the frequency domain (Xu et al., CVPR 2020)",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["freqdet", "freqdet.*"]),
    # Data: the shipped statistics, the configs (freqdet/configs links to configs/), and
    # the official DCTNet release's normalization tables (figures, with their source).
    package_data={
        "freqdet": [
            "natural_photo_stats.json",
            *(f"configs/{depth}*.{ext}" for depth in ("", "*/", "*/*/") for ext in ("yaml", "py")),
        ],
        "freqdet.classification": ["official_stats/*.json"],
    },
    ext_modules=[
        Extension("freqdet.io._jpeg", ["freqdet/io/jpeg_coefficients.c"], libraries=["jpeg"]),
        # -Werror=vla: no stack array sized at run time (the scratch arrays live on the heap).
        Extension("freqdet.dct._banded", ["freqdet/dct/banded_dct.c"], extra_compile_args=["-O3", "-Werror=vla"]),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
    install_requires=[
        "torch",
        "torchvision",
        "numpy",
        "Pillow",
        "pycocotools",
        "fvcore",
        "PyTurboJPEG",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        # --preprocess official: the release's validation pipeline resizes with OpenCV.
        "official": ["opencv-python-headless"],
        # tools/export_model.py's ONNX files and freqdet.deploy's ONNX Runtime.
        "deploy": ["onnx", "onnxruntime"],
        "test": [
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "scipy",
            "jpeglib",
            "scikit-learn",
            "opencv-python-headless",
            "ruff==0.17.6",
        ],
    },
)

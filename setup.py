"""freqdet: Detectron2 models that learn in the frequency domain.

Detectron2 itself is not on PyPI, so it is not listed here: install it from source
(https://detectron2.readthedocs.io/en/latest/tutorials/install.html), or let
``tools/setup.sh`` install its fallback (see README.md).
"""
import os

from setuptools import find_packages, setup


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
    python_requires=">=3.9",
    packages=find_packages(include=["freqdet", "freqdet.*"]),
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
    extras_require={"test": ["pytest", "pytest-timeout", "scipy", "jpeglib", "scikit-learn"]},
)

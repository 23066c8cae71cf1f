"""Shared fixtures: a real photo shipped with matplotlib, and small synthetic images."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER"):
    # tools/test.sh runs the suite in one pytest-xdist worker per core: each worker (and the tools it
    # starts) computes on one thread, so that the workers share the cores instead of contending.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_configure(config):
    # Detectron2 0.6 and torch's TorchScript emit deprecation notices on import; they are not ours.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:detectron2")
    config.addinivalue_line("filterwarnings", "ignore:.*torch.jit.script.*:FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore:pkg_resources is deprecated:UserWarning")
    config.addinivalue_line("filterwarnings", "ignore:torch.meshgrid:UserWarning")
    config.addinivalue_line("markers", "slow: more than a few seconds; tools/test.sh --quick leaves these out")
    config.addinivalue_line("markers", "release_figures: the release-detector figures of the docs (minutes)")


def pytest_collection_modifyitems(config, items):
    """Files with more slow tests first (each file's order kept), so that tools/test.sh's workers,
    which take whole files in this order, start the long files early and finish together; the
    release-detector figures run only when asked for by their marker (-m release_figures)."""
    slow = {}
    for item in items:
        slow[item.fspath] = slow.get(item.fspath, 0) + ("slow" in item.keywords)
    items.sort(key=lambda item: -slow[item.fspath])
    if "release_figures" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(
        reason="the docs' release-detector figures take minutes: pytest -m release_figures -s "
        "tests/test_release_detector.py prints them"
    )
    for item in items:
        if "release_figures" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """``mktemp(name)`` for a test file's module fixtures (its training runs, exports, datasets).
    The folders are removed once the file's tests are done, unless one of them failed: with
    pyproject.toml's ``tmp_path_retention_policy = "failed"``, which does the same for ``tmp_path``,
    a suite run keeps one file's checkpoints on disk at a time per worker, not every file's."""
    made = []

    def mktemp(name):
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    failed_before = request.session.testsfailed
    yield mktemp
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def photo_path() -> str:
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def photo_rgb(photo_path) -> np.ndarray:
    """Grace Hopper's portrait (600x512), decoded by Pillow, as uint8 RGB."""
    return np.asarray(Image.open(photo_path).convert("RGB"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def demo_dicts():
    """The demo training set's dataset dicts (generated on first use)."""
    from detectron2.data import DatasetCatalog

    import freqdet  # noqa: F401  (registers the demo datasets)

    return DatasetCatalog.get("freqdet_demo_train")

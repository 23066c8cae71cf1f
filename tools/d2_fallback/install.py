#!/usr/bin/env python
"""Install Detectron2 0.6's Python sources into this interpreter, without the C++ extension.

Used by ``tools/setup.sh`` only where no Detectron2 is importable (no GPU, no compiler
route). It downloads PyPI's ``pb1-detectron2==0.6`` sdist, copies its ``detectron2``
package into site-packages unchanged, with the projects Detectron2's own setup.py installs
as ``detectron2.projects.*`` (PointRend, DeepLab, Panoptic-DeepLab), adds the ``_C`` stand-in
from this folder (see its docstring) and writes ``detectron2-0.6.dist-info`` so pip lists it
and can uninstall it.
Its dependencies are installed by the caller with the pins in ``constraints.txt``.
"""

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SDIST = "pb1-detectron2==0.6"
ROOT = "pb1-detectron2-0.6/"
# Each installed folder (relative to site-packages) and the sdist's folder it comes from, as
# Detectron2's setup.py maps them (its package_dir).
SOURCES = {
    "detectron2/": "detectron2/",
    "detectron2/projects/point_rend/": "projects/PointRend/point_rend/",
    "detectron2/projects/deeplab/": "projects/DeepLab/deeplab/",
    "detectron2/projects/panoptic_deeplab/": "projects/Panoptic-DeepLab/panoptic_deeplab/",
}
DIST_INFO = "detectron2-0.6.dist-info"


def download(cache: str) -> str:
    os.makedirs(cache, exist_ok=True)
    found = [f for f in os.listdir(cache) if f.startswith("pb1-detectron2-0.6") and f.endswith(".tar.gz")]
    if not found:
        # Preparing the sdist's metadata runs its setup.py, which imports torch: hence
        # --no-build-isolation, with torch already installed.
        subprocess.check_call(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-binary",
                ":all:",
                SDIST,
                "-d",
                cache,
            ]
        )
        found = [f for f in os.listdir(cache) if f.startswith("pb1-detectron2-0.6") and f.endswith(".tar.gz")]
    if not found:
        sys.exit(f"freqdet setup: pip download {SDIST} gave no pb1-detectron2-0.6*.tar.gz in {cache}")
    return os.path.join(cache, found[0])


def _record_line(site: str, path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{os.path.relpath(path, site)},sha256={digest},{len(data)}"


def destination(name: str):
    """Where the sdist's member ``name`` goes, relative to site-packages; None if it is not installed."""
    if not name.startswith(ROOT):
        return None
    rel = name[len(ROOT) :].rstrip("/") + "/"
    if os.path.isabs(rel) or ".." in rel.split("/"):
        return None
    for installed, source in SOURCES.items():
        if rel.startswith(source):
            return (installed + rel[len(source) :]).rstrip("/")
    return None


def install(tarball: str, site: str) -> None:
    target = os.path.join(site, "detectron2")
    for old in (target, os.path.join(site, DIST_INFO)):
        if os.path.exists(old):
            shutil.rmtree(old)
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            dest = destination(member.name)
            if dest is None or not (member.isfile() or member.isdir()):
                continue
            dest = os.path.join(site, dest)
            if member.isdir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with tar.extractfile(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    shutil.copyfile(os.path.join(HERE, "_C.py"), os.path.join(target, "_C.py"))

    info = os.path.join(site, DIST_INFO)
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(
            "Metadata-Version: 2.1\nName: detectron2\nVersion: 0.6\n"
            "Summary: Detectron2 0.6 Python sources from PyPI's pb1-detectron2 sdist, installed by "
            "freqdet's set-up without the C++/CUDA extension (detectron2._C is a stand-in).\n"
            "Home-page: https://github.com/facebookresearch/detectron2\nLicense: Apache-2.0\n"
        )
    with open(os.path.join(info, "INSTALLER"), "w") as f:
        f.write("freqdet-setup\n")
    with open(os.path.join(info, "top_level.txt"), "w") as f:
        f.write("detectron2\n")
    files = [os.path.join(dp, name) for dp, _, names in os.walk(target) for name in names]
    files += [os.path.join(info, name) for name in ("METADATA", "INSTALLER", "top_level.txt")]
    with open(os.path.join(info, "RECORD"), "w") as f:
        f.writelines(_record_line(site, p) + "\n" for p in sorted(files))
        f.write(f"{DIST_INFO}/RECORD,,\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", required=True, help="folder that keeps the downloaded sdist")
    parser.add_argument(
        "--download-only",
        action="store_true",
        help="only keep the sdist in --cache (where a Detectron2 is installed already, for the tests that run "
        "Detectron2's own tools/lazyconfig_train_net.py)",
    )
    args = parser.parse_args()
    if args.download_only:
        print(f"freqdet setup: Detectron2 0.6's source (for its tools/) is in {download(args.cache)}")
        return 0
    site = sysconfig.get_paths()["purelib"]
    install(download(args.cache), site)
    subprocess.check_call(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "import detectron2.modeling, detectron2.engine, detectron2.projects.point_rend",
        ]
    )
    print(f"freqdet setup: installed Detectron2 0.6 (Python sources, _C stand-in) into {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

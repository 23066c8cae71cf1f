"""Semantic, panoptic and keypoint labels for the detection demo, derived from its instance annotations.

Nothing of the demo itself (:mod:`.coco_shapes`: its JPEGs, its instance JSON) changes:
the labels below are computed from the polygons in that JSON, on first use, into a folder
of their own beside it, ``$FREQDET_CACHE/demo_v1_dense`` (made atomically, like the demo).
Per split (``train``, ``val``), :func:`dense_paths` names:

- ``{split}_sem_seg/*.png``: semantic labels, mode "L", the image's size; 0 is the
  background, ``k`` (1..6) is the category index + 1 (= its COCO ``category_id``) where an
  object's polygon covers the pixel. Polygons are filled with Pillow's ``ImageDraw`` in
  annotation order, later objects over earlier ones: the rasterizer that painted the shapes
  into the JPEGs, so the labels are the painted pixels (up to the JSON's rounding of the
  polygons to 0.01 pixel). pycocotools' masks of the same polygons (Detectron2's instance
  masks) put pixel centres half a pixel further and leave out edge pixels Pillow fills: they
  differ on a one-pixel rim, about 2.4% of the object pixels. Classes: :data:`SEM_SEG_CLASSES`.
- The separated panoptic form Panoptic FPN trains on (Detectron2's
  ``register_coco_panoptic_separated``): ``{split}_panoptic_stuff/*.png``, the stuff labels,
  0 ("things") on every object pixel and 1 ("background") elsewhere
  (:data:`PANOPTIC_STUFF_CLASSES`); and the COCO panoptic ground truth COCOPanopticEvaluator
  reads, ``{split}_panoptic.json`` with ``{split}_panoptic/*.png`` (RGB, segment id =
  R + 256 G + 256^2 B). An object's segment id is its instance annotation id; the
  background's is :data:`BACKGROUND_SEGMENT_ID`. Categories 1..6 are the things
  (``isthing`` 1), :data:`STUFF_CATEGORY_ID` (7) "background" the one stuff category.
- ``{split}_keypoints.json``: the instance JSON (same images, annotation ids, boxes and
  polygons) plus two keypoints an object, :data:`KEYPOINT_NAMES`: its polygon's vertex of
  least x and of greatest x (the first such vertex on ties). Written in COCO's keypoint
  frame, where integer coordinates are pixel centres, i.e. the vertex minus 0.5: Detectron2's
  ``load_coco_json`` adds the 0.5 back, so it yields the vertex itself. A horizontal flip
  turns the leftmost vertex into the rightmost, hence :data:`KEYPOINT_FLIP_MAP`.

numpy and Pillow only; Detectron2's catalog entries for these are in
:mod:`freqdet.detection.datasets`.
"""

import copy
import json
import logging
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from . import coco_shapes
from .cache import stage
from .coco_shapes import CLASSES, demo_root, prepare_demo, split_paths

logger = logging.getLogger(__name__)

SEM_SEG_CLASSES = ("background",) + CLASSES
PANOPTIC_STUFF_CLASSES = ("things", "background")
STUFF_CATEGORY_ID = len(CLASSES) + 1
BACKGROUND_SEGMENT_ID = 256**3 - 1  # panoptic ids must be non-zero (0 is void) and below 256^3
KEYPOINT_NAMES = ("left_end", "right_end")
KEYPOINT_FLIP_MAP = (("left_end", "right_end"),)
KEYPOINT_SKELETON = ((1, 2),)  # COCO's 1-based pairs
KEYPOINT_CONNECTION_RULES = (("left_end", "right_end", (255, 0, 0)),)


class DensePaths(NamedTuple):
    """Where one split's derived labels are."""

    sem_seg_root: str
    panoptic_root: str
    panoptic_json: str
    panoptic_stuff_root: str
    keypoints_json: str


def dense_root(root: Optional[str] = None) -> str:
    """The derived labels' folder for the demo in ``root`` (default: the demo's own)."""
    return os.path.normpath(root or demo_root()) + "_dense"


def dense_paths(split: str, root: Optional[str] = None) -> DensePaths:
    """The derived labels of a split of the demo in ``root`` (default: the demo's own folder)."""
    return _paths_in(dense_root(root), split)


def _paths_in(folder: str, split: str) -> DensePaths:
    return DensePaths(
        sem_seg_root=os.path.join(folder, f"{split}_sem_seg"),
        panoptic_root=os.path.join(folder, f"{split}_panoptic"),
        panoptic_json=os.path.join(folder, f"{split}_panoptic.json"),
        panoptic_stuff_root=os.path.join(folder, f"{split}_panoptic_stuff"),
        keypoints_json=os.path.join(folder, f"{split}_keypoints.json"),
    )


def _polygons(annotation: Dict) -> List[np.ndarray]:
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in annotation["segmentation"]]


def object_index_map(annotations: Sequence[Dict], height: int, width: int) -> np.ndarray:
    """int32 (height, width): 0 where no polygon is, else 1 + the index of the last annotation
    (in the given order) whose polygon covers the pixel."""
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for i, annotation in enumerate(annotations):
        for polygon in _polygons(annotation):
            draw.polygon([tuple(p) for p in polygon], fill=i + 1)
    return np.asarray(canvas, dtype=np.int32)


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic's encoding of segment ids: (..., 3) uint8 with id = R + 256 G + 256^2 B."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2 % 256], axis=-1).astype(np.uint8)


def _mask_bbox(mask: np.ndarray) -> List[int]:
    """COCO panoptic's [x, y, w, h] of a mask's pixels."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def extreme_keypoints(annotation: Dict) -> List[float]:
    """COCO ``keypoints`` of an annotation: its polygon's vertices of least and greatest x
    (first on ties), as [x, y, 2, x, y, 2] in COCO's pixel-centre frame (vertex - 0.5)."""
    vertices = np.concatenate(_polygons(annotation))
    out = []
    for i in (int(np.argmin(vertices[:, 0])), int(np.argmax(vertices[:, 0]))):
        out += [round(float(vertices[i, 0]) - 0.5, 2), round(float(vertices[i, 1]) - 0.5, 2), 2]
    return out


def dense_labels(image: Dict, annotations: Sequence[Dict]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Dict]]:
    """One image's (semantic labels, stuff labels, panoptic RGB, panoptic ``segments_info``)
    from its instance annotations in annotation order."""
    index = object_index_map(annotations, image["height"], image["width"])
    categories = np.array([0] + [a["category_id"] for a in annotations], dtype=np.uint8)
    segment_ids = np.array([BACKGROUND_SEGMENT_ID] + [a["id"] for a in annotations], dtype=np.int64)
    areas = np.bincount(index.ravel(), minlength=len(annotations) + 1)
    segments = []
    for i, annotation in enumerate(annotations, start=1):
        if areas[i]:  # an object wholly under later ones has no segment
            segments.append(
                {
                    "id": int(annotation["id"]),
                    "category_id": int(annotation["category_id"]),
                    "area": int(areas[i]),
                    "bbox": _mask_bbox(index == i),
                    "iscrowd": 0,
                }
            )
    if areas[0]:
        segments.append(
            {
                "id": BACKGROUND_SEGMENT_ID,
                "category_id": STUFF_CATEGORY_ID,
                "area": int(areas[0]),
                "bbox": _mask_bbox(index == 0),
                "iscrowd": 0,
            }
        )
    stuff = (index == 0).astype(np.uint8)  # 0 "things", 1 "background"
    return categories[index], stuff, id_to_rgb(segment_ids)[index], segments


def generate_dense_split(split: str, root: str, folder: str) -> None:
    """Write the derived labels of ``split`` of the demo in ``root`` into ``folder``."""
    json_file, _ = split_paths(split, root)
    with open(json_file) as f:
        instances = json.load(f)
    paths = _paths_in(folder, split)
    for d in (paths.sem_seg_root, paths.panoptic_root, paths.panoptic_stuff_root):
        os.makedirs(d, exist_ok=True)
    by_image = {image["id"]: [] for image in instances["images"]}
    for annotation in instances["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    panoptic_annotations = []
    for image in instances["images"]:
        name = os.path.splitext(image["file_name"])[0] + ".png"
        semantic, stuff, panoptic, segments = dense_labels(image, by_image[image["id"]])
        Image.fromarray(semantic, "L").save(os.path.join(paths.sem_seg_root, name))
        Image.fromarray(stuff, "L").save(os.path.join(paths.panoptic_stuff_root, name))
        Image.fromarray(panoptic, "RGB").save(os.path.join(paths.panoptic_root, name))
        panoptic_annotations.append({"image_id": image["id"], "file_name": name, "segments_info": segments})
    things = [
        {"id": c["id"], "name": c["name"], "supercategory": "shape", "isthing": 1} for c in instances["categories"]
    ]
    stuff_category = {"id": STUFF_CATEGORY_ID, "name": "background", "supercategory": "background", "isthing": 0}
    with open(paths.panoptic_json, "w") as f:
        json.dump(
            {
                "images": instances["images"],
                "annotations": panoptic_annotations,
                "categories": things + [stuff_category],
            },
            f,
        )

    keypoints = copy.deepcopy(instances)
    for annotation in keypoints["annotations"]:
        annotation["keypoints"] = extreme_keypoints(annotation)
        annotation["num_keypoints"] = len(KEYPOINT_NAMES)
    for category in keypoints["categories"]:
        category["keypoints"] = list(KEYPOINT_NAMES)
        category["skeleton"] = [list(pair) for pair in KEYPOINT_SKELETON]
    with open(paths.keypoints_json, "w") as f:
        json.dump(keypoints, f)


def prepare_dense_labels(root: Optional[str] = None) -> str:
    """Derive the semantic, panoptic and keypoint labels of the demo in ``root`` (generated
    first if missing) unless they are there already; returns their folder (:func:`dense_root`).

    The folder appears whole (:func:`.cache.stage`): a split's keypoint JSON, written last,
    marks it complete.
    """
    root = prepare_demo(root)
    target = dense_root(root)

    def build(folder: str) -> None:
        logger.info(f"Deriving the freqdet demo's semantic, panoptic and keypoint labels into {target} (once) ...")
        for split in coco_shapes.SPLITS:
            generate_dense_split(split, root, folder)

    def ready(folder: str) -> bool:
        return all(os.path.exists(_paths_in(folder, s).keypoints_json) for s in coco_shapes.SPLITS)

    return stage(target, build, ready)

#!/usr/bin/env python
"""Side-by-side benchmark of the data path and the train step: stock Detectron2 vs freqdet.

    python tools/benchmark.py                  # CPU: mappers, bytes, train step
    python tools/benchmark.py --device cuda    # also loader-to-GPU throughput

In one process, on the same real JPEGs (photos shipped with matplotlib and scikit-learn;
``--demo-images`` adds some of the demo dataset's validation images), interleaved round by round so that machine
noise hits every variant alike:

- mappers, one thread (median ms per image, images/s per core): Detectron2's ``DatasetMapper``
  against ``DCTDatasetMapper`` for 24 / 64 / 192 channels and each wire dtype (reading a
  JPEG's own Y, Cb and Cr planes, ``INPUT.DCT.SOURCE "planes"``), DCT-24 from pixels decoded
  to BGR (``SOURCE "pixels"``) and with the transform left to the device, all with
  Detectron2's COCO training augmentation (ResizeShortestEdge 800 / 1333 and a horizontal
  flip), and the compressed-domain path that reads the JPEG's own coefficients, next to
  the JPEG decode alone (libjpeg-turbo to BGR, ``freqdet.io.read_image``: the floor of any
  pixel path); with ``--stages``, where each
  DCT mapper's time goes (decode, augmentation, colour conversion, the transform's two passes,
  the second with the wire dtype's stores, annotations, the rest); and the same for large-scale jitter (Detectron2's
  LSJ recipes: ResizeScale 0.1-2.0, FixedSizeCrop 1024, flip), stock against DCT-24, the
  crop and pad absorbed by the frequency transform or applied to the pixels first;
- bytes per sample: the tensor each mapper ships to the model;
- with ``--memory N``, a loader process's memory under LSJ: the stock and the DCT-24 LSJ
  mapper each in a fresh process (as a DataLoader worker is) mapping N samples of the same
  photos with the same random state, its resident memory after a warm-up and as it goes on;
- train step: Mask R-CNN R50-FPN with DCT-24 input against the stock R50-FPN, same pixel
  size, all threads;
- inference, one thread: ``freqdet.DCTPredictor`` (DCT-24 R50-FPN) against Detectron2's
  ``DefaultPredictor`` (RGB R50-FPN), Faster R-CNN, time per image from the file to
  ``Instances``, same photos, same test size;
- with ``--device cuda``: images/s from a DataLoader (workers, pinned memory) to the GPU;
- ``--deploy`` (instead of all the above): file to detections, one thread, for exported models
  (``freqdet.detection.export``) served by ``freqdet.deploy``: the DCT-24 Faster R-CNN under ONNX
  Runtime against the same model in PyTorch (``DCTPredictor``) and Detectron2's RGB twin exported
  and served the same way (and in PyTorch, ``DefaultPredictor``), with the bytes that enter each graph.

Prints a markdown table and writes it with the raw figures as JSON to ``--output``;
``--summarize RUN/benchmark.json ...`` prints the median and range of several such runs.
Ratios are what to read; absolute times on shared machines are noise.
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from freqdet import stages

# freqdet before Detectron2: importing it first keeps its dependencies' import-time notices quiet.
from freqdet.dct import kernel_routines
from freqdet.dct.wire import encode_image
from freqdet.demo import packaged_photos
from freqdet.detection import DCTDatasetMapper, DCTPredictor
from freqdet.detection.config import load_config
from freqdet.detection.inputs import shipped_bytes
from freqdet.io import read_image
from freqdet.io.coefficients import check_available
from freqdet.known_warnings import quiet_known_warnings
from freqdet.machine import describe_machine
from freqdet.stats import evenly_spaced

# isort: split
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image as detectron2_read_image
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photos(num_demo: int, images=None):
    """Dataset dicts of real JPEGs: the given files, or the packaged photos, plus some demo
    validation images."""
    paths = sorted(images) if images else packaged_photos()
    dicts = [{"file_name": p, "image_id": i} for i, p in enumerate(paths)]
    demo = evenly_spaced(DatasetCatalog.get("freqdet_demo_val"), num_demo) if num_demo else []
    return dicts + [{"file_name": d["file_name"], "image_id": 100 + i} for i, d in enumerate(demo)]


def base_cfg(config: str, device: str):
    cfg = load_config(os.path.join(ROOT, "configs", config))
    cfg.MODEL.DEVICE = device
    cfg.INPUT.MIN_SIZE_TRAIN = (800,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1333
    return cfg


DECODE_ONLY = "libjpeg-turbo decode to BGR only (freqdet.io.read_image)"


def decode_only(dataset_dict):
    """The decode every pixel path starts with, and nothing else."""
    with stages.stage(stages.DECODE):
        return {"image": torch.from_numpy(read_image(dataset_dict["file_name"], format="BGR"))}


def mapper_variants(channel_counts, wires):
    """(name, mapper, config) for the decode alone, stock and each DCT variant."""
    cfg = base_cfg("mask_rcnn_rgb_R50_FPN.yaml", "cpu")
    variants = [(DECODE_ONLY, decode_only, None), ("stock DatasetMapper (uint8 pixels)", DatasetMapper(cfg, True), cfg)]
    for n in channel_counts:
        for wire in wires:
            cfg = base_cfg("mask_rcnn_dct_R50_FPN.yaml", "cpu")
            cfg.MODEL.DCT.CHANNELS, cfg.INPUT.DCT.WIRE_DTYPE = n, wire
            variants.append((f"DCT-{n} {wire}", DCTDatasetMapper(cfg, True), cfg))
    cfg = base_cfg("mask_rcnn_dct_R50_FPN.yaml", "cpu")
    cfg.INPUT.DCT.SOURCE = "pixels"
    variants.append(("DCT-24 int16 from pixels decoded to BGR (SOURCE pixels)", DCTDatasetMapper(cfg, True), cfg))
    cfg = base_cfg("mask_rcnn_dct_R50_FPN.yaml", "cpu")
    cfg.MODEL.DCT.TRANSFORM_ON = "device"
    variants.append(("DCT-24, transform on device (ships decoded pixels)", DCTDatasetMapper(cfg, True), cfg))
    if compressed_path_available():
        cfg = base_cfg("mask_rcnn_dct_R50_FPN.yaml", "cpu")
        cfg.INPUT.DCT.SOURCE = "jpeg"
        variants.append(("DCT-24 from the JPEG's coefficients (int16, file grid)", DCTDatasetMapper(cfg, True), cfg))
    return variants


def lsj_variants(size: int):
    """(name, mapper, config) for Detectron2's large-scale jitter at ``size`` (ResizeScale 0.1-2.0,
    FixedSizeCrop, flip: its LSJ recipes' training augmentation), stock and DCT-24 int16, the
    crop and pad absorbed by the frequency transform or applied to the pixels first."""
    augmentations = [
        T.ResizeScale(min_scale=0.1, max_scale=2.0, target_height=size, target_width=size),
        T.FixedSizeCrop(crop_size=(size, size)),
        T.RandomFlip(horizontal=True),
    ]
    common = dict(is_train=True, augmentations=augmentations, image_format="BGR", use_instance_mask=True)
    common["recompute_boxes"] = True
    return [
        (f"stock DatasetMapper, LSJ {size}", DatasetMapper(**common), None),
        (f"DCT-24 int16, LSJ {size}, crop and pad absorbed", DCTDatasetMapper(channels=24, **common), None),
        (
            f"DCT-24 int16, LSJ {size}, pixels cropped and padded first",
            DCTDatasetMapper(channels=24, fuse_resize=False, **common),
            None,
        ),
    ]


MEMORY_WARMUP = 20  # samples mapped before the first reading: imports, first allocations


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux's /proc; elsewhere its peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def memory_probe(dicts, which: int, samples: int, size: int) -> dict:
    """In this process: resident memory while LSJ mapper ``which`` of :func:`lsj_variants` maps
    ``samples`` samples (seeded by their number, so every mapper draws the same augmentations)."""
    torch.set_num_threads(1)
    name, mapper, _ = lsj_variants(size)[which]
    for i in range(MEMORY_WARMUP):
        np.random.seed(samples + i)
        mapper(copy.deepcopy(dicts[i % len(dicts)]))
    readings = [(0, resident_mib())]
    every = max(1, samples // 10)
    for i in range(samples):
        np.random.seed(i)
        mapper(copy.deepcopy(dicts[i % len(dicts)]))
        if (i + 1) % every == 0 or i + 1 == samples:
            readings.append((i + 1, resident_mib()))
    return {"mapper": name, "readings": readings}


def bench_memory(images, samples: int, size: int) -> list:
    """:func:`memory_probe` of the stock and the DCT-24 LSJ mapper, each in a fresh process."""
    results = []
    for which in (0, 1):
        command = [sys.executable, os.path.abspath(__file__), "--memory-probe", str(which), "--memory", str(samples)]
        command += ["--lsj-size", str(size), "--images", *images]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the memory probe failed (exit status {done.returncode}): {done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        first, last = results[-1]["readings"][0][1], results[-1]["readings"][-1][1]
        print(f"  memory: {results[-1]['mapper']}: {first:.0f} -> {last:.0f} MiB", file=sys.stderr)
    return results


def memory_lines(results, samples: int, size: int, photos: int) -> list:
    stock_growth = results[0]["readings"][-1][1] - results[0]["readings"][0][1]
    lines = [
        "",
        f"| one loader process, LSJ {size}, {samples} samples of {photos} photos | resident after "
        f"{MEMORY_WARMUP} warm-up samples | after {samples} | growth | growth minus the stock mapper's |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in results:
        first, last = result["readings"][0][1], result["readings"][-1][1]
        lines.append(
            f"| {result['mapper']} | {first:.0f} MiB | {last:.0f} MiB | {last - first:.0f} MiB "
            f"| {last - first - stock_growth:+.0f} MiB |"
        )
    return lines


def compressed_path_available() -> bool:
    try:
        check_available()
    except RuntimeError as e:
        print(f"skipping the compressed-domain path: {e}", file=sys.stderr)
        return False
    return True


def bench_mappers(dicts, variants, rounds: int):
    """Median seconds per image and mean bytes per sample of each mapper, interleaved by round."""
    torch.set_num_threads(1)
    times = {name: [] for name, *_ in variants}
    nbytes = {name: [] for name, *_ in variants}
    for _, mapper, *_ in variants:  # warm-up: imports, caches, first allocations
        mapper(copy.deepcopy(dicts[0]))
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for name, mapper, _ in order:
            np.random.seed(r)
            for d in dicts:
                d = copy.deepcopy(d)
                start = time.perf_counter()
                out = mapper(d)
                times[name].append(time.perf_counter() - start)
                if r == 0:
                    nbytes[name].append(shipped_bytes(out))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return {name: (statistics.median(times[name]), statistics.fmean(nbytes[name])) for name in times}


OTHER = "the rest (Python, dict copies, allocation)"


def bench_stages(dicts, variants, rounds: int):
    """Mean ms per image of each stage of each mapper (:mod:`freqdet.stages`), and the rest of
    its time: the stages are recorded, mapper by mapper, round by round, on one thread."""
    torch.set_num_threads(1)
    spent = {name: {} for name, *_ in variants}
    totals = {name: 0.0 for name, *_ in variants}
    for r in range(rounds):
        for name, mapper, _ in variants:
            np.random.seed(r)
            with stages.recording() as recorded:
                start = time.perf_counter()
                for d in dicts:
                    mapper(copy.deepcopy(d))
                totals[name] += time.perf_counter() - start
            for stage, seconds in recorded.items():
                spent[name][stage] = spent[name].get(stage, 0.0) + seconds
    calls = rounds * len(dicts)
    table = {}
    for name in spent:
        per_image = {stage: 1e3 * seconds / calls for stage, seconds in spent[name].items()}
        per_image[OTHER] = 1e3 * totals[name] / calls - sum(per_image.values())
        table[name] = per_image
    return table


def stage_lines(table) -> list:
    """The per-stage table as markdown lines: a row per stage, a column per mapper."""
    names = list(table)
    order = [stages.DECODE, stages.AUGMENTATION, *stages.KERNEL_STAGES, stages.ANNOTATIONS, OTHER]
    rows = [s for s in order if any(s in table[n] for n in names)]
    rows += sorted({s for n in names for s in table[n]} - set(rows))
    lines = ["| stage, ms per image | " + " | ".join(names) + " |", "|---" + "|---:" * len(names) + "|"]
    for stage in rows:
        lines.append(f"| {stage} | " + " | ".join(f"{table[n].get(stage, 0.0):.2f}" for n in names) + " |")
    totals = [sum(table[n].values()) for n in names]
    lines.append("| **total** | " + " | ".join(f"**{t:.2f}**" for t in totals) + " |")
    return lines


def synthetic_batch(height: int, width: int, n: int = 2):
    """Training inputs with pixels and a few boxes/polygons, for both models."""
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(n):
        image = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
        inst = Instances((height, width))
        boxes = [[40, 60, 300, 400], [350, 100, 500, 300]]
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor([1, 7])
        inst.gt_masks = PolygonMasks([[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes])
        batch.append(
            {"image": image, "image_size": (height, width), "instances": inst, "height": height, "width": width}
        )
    return batch


def bench_train_step(device: str, size, steps: int):
    """Median seconds per training step of stock R50-FPN and DCT-24 R50-FPN Mask R-CNN."""
    torch.set_num_threads(os.cpu_count() or 1)
    models = {}
    for name, config in (
        ("stock R50-FPN (RGB)", "mask_rcnn_rgb_R50_FPN.yaml"),
        ("DCT-24 R50-FPN", "mask_rcnn_dct_R50_FPN.yaml"),
    ):
        cfg = base_cfg(config, device)
        cfg.MODEL.WEIGHTS = ""
        cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # the same residual blocks in both
        cfg.MODEL.DCT.MEAN, cfg.MODEL.DCT.STD = [0.0] * 192, [1.0] * 192  # timing only: no statistics needed
        torch.manual_seed(0)
        models[name] = build_model(cfg).train()
    batch = synthetic_batch(*size)
    dct_model = models["DCT-24 R50-FPN"]
    dct_batch = [
        {
            **{k: v for k, v in x.items() if k != "image"},
            "dct": encode_image(x["image"].permute(1, 2, 0).numpy(), dct_model.channels, "BGR", "int16"),
        }
        for x in batch
    ]
    inputs = {"stock R50-FPN (RGB)": batch, "DCT-24 R50-FPN": dct_batch}
    times = {name: [] for name in models}
    with EventStorage(0):
        for step in range(steps + 1):
            for name, model in models.items():
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                losses = model(inputs[name])
                sum(losses.values()).backward()
                model.zero_grad(set_to_none=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                if step > 0:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def inference_cfg(config: str, device: str, test_size):
    """The inference comparisons' config of ``config`` (see :func:`bench_predictors`): random weights,
    the same residual blocks for DCT and RGB, score threshold 0, 2x2 RoIAlign samples, ImageNet's
    stds for the RGB model, ``test_size`` (shorter side, longer side at most)."""
    cfg = base_cfg(config, device)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2
    cfg.MODEL.PIXEL_STD = [57.375, 57.120, 58.395]  # BGR, ImageNet's; used by the RGB model only
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = test_size
    return cfg


def bench_predictors(paths, rounds: int, device: str, test_size=(800, 1333)):
    """Median seconds per image from the file to ``Instances``: Detectron2's ``DefaultPredictor``
    on the RGB R50-FPN (Detectron2's ``read_image``, then the predictor) against
    ``DCTPredictor`` on the DCT-24 R50-FPN (the path), one thread.

    Faster R-CNN, so that the heads do the same work in both: with random weights the two
    networks propose boxes of different sizes, and a mask head's cost (pasting masks) grows
    with them. For the same reason ROIAlign samples a fixed 2x2 points per bin (not as many
    as a box is large), the score threshold is 0 (both keep 100 detections), and the RGB
    model divides its pixels by ImageNet's stds (unit scale like the DCT input, the same cost;
    with Detectron2's PIXEL_STD of 1 a random RGB network's proposals collapse). ``test_size``:
    (shorter side, longer side at most), COCO's by default."""
    torch.set_num_threads(1)
    predictors = {}
    for name, config, make in (
        ("Detectron2 DefaultPredictor, RGB R50-FPN", "faster_rcnn_rgb_R50_FPN.yaml", DefaultPredictor),
        ("freqdet DCTPredictor, DCT-24 R50-FPN", "faster_rcnn_dct_R50_FPN.yaml", DCTPredictor),
    ):
        cfg = inference_cfg(config, device, test_size)
        torch.manual_seed(0)
        predictors[name] = make(cfg)
    stock, ours = predictors.values()
    calls = {
        name: (lambda p: stock(detectron2_read_image(p, format="BGR"))) if predictor is stock else predictor
        for name, predictor in predictors.items()
    }
    times = {name: [] for name in calls}
    detections = {name: 0 for name in calls}
    for call in calls.values():
        call(paths[0])  # warm-up
    for r in range(rounds):
        for name, call in list(calls.items()) if r % 2 == 0 else list(calls.items())[::-1]:
            for path in paths:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                instances = call(path)["instances"]
                if device == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
                detections[name] += len(instances)
    return {name: (statistics.median(times[name]), detections[name] / (rounds * len(paths))) for name in calls}


def bench_loader_to_gpu(dicts, variants, workers: int, epochs: int):
    """Images/s from a DataLoader (workers, pinned memory) to the model's normalized input
    on the GPU, per mapper: the copy and the model's own ``preprocess_image`` (normalizing
    pixels; dequantizing and normalizing coefficients; the frequency transform itself for
    pixels shipped to the device), and the bytes per second that crossed to the GPU."""
    from torch.utils.data import DataLoader

    results = {}
    for name, mapper, cfg in variants:
        cfg = cfg.clone()
        cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cuda", ""
        cfg.MODEL.DCT.MEAN, cfg.MODEL.DCT.STD = [0.0] * 192, [1.0] * 192  # timing only
        model = build_model(cfg).eval()
        data = [dicts[i % len(dicts)] for i in range(max(64, len(dicts)))]
        loader = DataLoader(
            data,
            batch_size=None,
            num_workers=workers,
            pin_memory=True,
            collate_fn=lambda d, mapper=mapper: mapper(copy.deepcopy(d)),
        )
        with torch.no_grad():
            model.preprocess_image([next(iter(loader))])  # warm-up: workers, CUDA kernels
            count, moved = 0, 0
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(epochs):
                for mapped in loader:
                    model.preprocess_image([mapped])
                    moved += shipped_bytes(mapped)
                    count += 1
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        results[name] = (count / elapsed, moved / elapsed)
        del model
    return results


def exported(cfg, folder: str, sample: str):
    """``cfg``'s model (weights as built) exported to ONNX in ``folder``, loaded by freqdet.deploy (one thread)."""
    import freqdet.deploy
    from freqdet.detection import export

    torch.manual_seed(0)
    model = build_model(cfg).eval()
    statistics = export.statistics_source(cfg, ())
    path, _, _ = export.export_detector(cfg, model, sample, "onnx", f"{folder}/model.onnx", statistics)
    return freqdet.deploy.load(path, threads=1)


def bench_deploy(paths, rounds: int, test_size, folder: str):
    """Median seconds per image from the file to detections and the bytes entering the network, per
    route: exported DCT-24 and RGB Faster R-CNN R50-FPN under ONNX Runtime (freqdet.deploy), and the
    same models in PyTorch (the settings of :func:`bench_predictors`), one thread."""
    torch.set_num_threads(1)
    calls, graph_bytes = {}, {}
    for kind, config, make in (("DCT-24", "faster_rcnn_dct_R50_FPN.yaml", DCTPredictor),
                               ("RGB", "faster_rcnn_rgb_R50_FPN.yaml", DefaultPredictor)):  # fmt: skip
        cfg = inference_cfg(config, "cpu", test_size)
        deployed = exported(cfg, os.path.join(folder, kind), paths[0])
        torch.manual_seed(0)
        predictor = make(cfg)
        name = f"{kind} R50-FPN"
        calls[f"freqdet.deploy, ONNX Runtime, {name}"] = deployed
        calls[f"PyTorch ({make.__name__}), {name}"] = (
            predictor if make is DCTPredictor else (lambda p, s=predictor: s(detectron2_read_image(p, format="BGR")))
        )
        graph_bytes[kind] = statistics.mean(
            sum(t.numel() * t.element_size() for t in deployed.inputs(p)[0]) for p in paths
        )
    times = {name: [] for name in calls}
    for call in calls.values():
        call(paths[0])  # warm-up
    for r in range(rounds):
        for name, call in list(calls.items()) if r % 2 == 0 else list(calls.items())[::-1]:
            for path in paths:
                start = time.perf_counter()
                call(path)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, graph_bytes


def deploy_lines(paths: list, args, report: dict) -> list:
    """The deploy comparison's table, its figures put into ``report["deploy"]``."""
    with tempfile.TemporaryDirectory(prefix="freqdet-deploy-") as folder:  # the exported files (~150 MB each)
        seconds, graph_bytes = bench_deploy(paths, args.predict_rounds, tuple(args.predict_size), folder)
    base = seconds["PyTorch (DCTPredictor), DCT-24 R50-FPN"]
    report["deploy"] = {"seconds_per_image": seconds, "bytes_into_the_network": graph_bytes}
    lines = [
        f"Machine: {report['machine']}. {len(paths)} JPEGs, {args.predict_rounds} interleaved rounds, one thread, "
        "median per image; random weights, score threshold 0.",
        "",
        f"| Faster R-CNN, file to detections, test size {args.predict_size[0]} / {args.predict_size[1]} | ms/image "
        "| speed vs PyTorch DCT-24 | bytes into the network |",
        "|---|---:|---:|---:|",
    ]
    for name, sec in seconds.items():
        kind = "DCT-24" if "DCT-24" in name else "RGB"
        lines.append(f"| {name} | {sec * 1e3:.1f} | {base / sec:.2f}x | {graph_bytes[kind] / 1e3:.0f} kB |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds over the images")
    parser.add_argument("--demo-images", type=int, default=0, help="demo validation images to add to the photos")
    parser.add_argument(
        "--images",
        nargs="+",
        metavar="JPEG",
        help="your own JPEGs instead of the photos matplotlib and scikit-learn ship",
    )
    parser.add_argument(
        "--stages", action="store_true", help="also time each DCT mapper's stages (decode, transform passes, ...)"
    )
    parser.add_argument("--channels", type=int, nargs="+", default=[24, 64, 192])
    parser.add_argument("--wires", nargs="+", default=["int16", "int8", "float32"])
    parser.add_argument(
        "--lsj-size", type=int, default=1024, help="crop size of the large-scale-jitter mapper rows (0 skips them)"
    )
    parser.add_argument("--train-size", type=int, nargs=2, default=[512, 640], metavar=("H", "W"))
    parser.add_argument("--train-steps", type=int, default=3, help="0 skips the train-step comparison")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers for --device cuda")
    parser.add_argument("--predict-rounds", type=int, default=3, help="rounds of the inference comparison (0 skips it)")
    parser.add_argument(
        "--predict-size",
        type=int,
        nargs=2,
        default=[800, 1333],
        metavar=("SHORT", "LONG"),
        help="test size of the inference comparison (COCO's by default)",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=0,
        metavar="N",
        help="also a loader process's resident memory over N LSJ samples, stock vs DCT-24 (e.g. 2000)",
    )
    parser.add_argument(
        "--deploy",
        action="store_true",
        help="instead: exported models under ONNX Runtime (freqdet.deploy) vs PyTorch, DCT-24 and RGB, file to "
        "detections (--predict-rounds, --predict-size)",
    )
    parser.add_argument("--memory-probe", type=int, choices=[0, 1], help=argparse.SUPPRESS)
    parser.add_argument("--output", default="output/benchmark")
    parser.add_argument(
        "--summarize",
        nargs="+",
        metavar="JSON",
        help="instead of measuring, print the median (and range) of earlier runs' benchmark.json records",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        missing = [path for path in args.summarize if not os.path.isfile(path)]
        if missing:
            print(f"--summarize: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        print(summarize(args.summarize))
        return 0
    quiet_known_warnings()
    if args.memory_probe is not None:  # one probe, in the fresh process bench_memory started
        print(json.dumps(memory_probe(photos(0, args.images), args.memory_probe, args.memory, args.lsj_size)))
        return 0
    return run(args)


def mapper_lines(mappers: dict, variants: list, lsj: list, report: dict, args) -> list:
    """The mapper tables (ratios to the stock mapper and to the decode alone), their figures put into
    ``report["mappers"]``."""
    decode_time = mappers[DECODE_ONLY][0]
    lines = [
        f"Machine: {report['machine']}. {len(report['images'])} JPEGs, {args.rounds} interleaved rounds, one thread, "
        "median per image.",
        "",
        "| mapper | ms per image | images/s per core | vs stock | vs decode alone | bytes per sample | vs stock |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for group, heading in ((variants, None), (lsj, f"LSJ mapper ({args.lsj_size}), same augmentation")):
        if not group:
            continue
        stock = next(name for name, *_ in group if name.startswith("stock"))
        stock_time, stock_bytes = mappers[stock]
        if heading:
            lines += [
                "",
                f"| {heading} | ms per image | images/s per core | vs stock LSJ | vs decode alone "
                "| bytes per sample | vs stock LSJ |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
        for name, *_ in group:
            seconds, nbytes = mappers[name]
            report["mappers"][name] = {
                "seconds_per_image": seconds,
                "images_per_s": 1 / seconds,
                "bytes_per_sample": nbytes,
                "throughput_vs_stock": stock_time / seconds,
                "time_vs_decode": seconds / decode_time,
                "bytes_vs_stock": nbytes / stock_bytes,
            }
            lines.append(
                f"| {name} | {seconds * 1e3:.2f} | {1 / seconds:.1f} | {stock_time / seconds:.2f}x "
                f"| {seconds / decode_time:.2f}x | {nbytes / 1e6:.2f} MB | {nbytes / stock_bytes:.2f}x |"
            )

    return lines


SUMMARIZED = ("seconds_per_image", "throughput_vs_stock", "time_vs_decode", "bytes_per_sample")


def summarize(records: list) -> str:
    """Several runs' ``benchmark.json`` (paths) as one table: for each mapper row that every run has, the
    median over the runs of its time, its speed against the stock mapper and its time against the
    decode alone, with their lowest and highest in brackets."""
    runs = []
    for path in records:
        with open(path) as f:
            runs.append(json.load(f))
    names = [n for n in runs[0]["mappers"] if all(n in r["mappers"] for r in runs)]
    machines = sorted({r["machine"] for r in runs})
    lines = [
        f"Median of {len(runs)} runs ({', '.join(records)}); machine: {'; '.join(machines)}.",
        "",
        "| mapper | ms per image | vs stock mapper | vs decode alone | bytes per sample |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        figures = {key: sorted(r["mappers"][name][key] for r in runs) for key in SUMMARIZED}
        ms, speed, decode = (figures[k] for k in SUMMARIZED[:3])
        lines.append(
            f"| {name} | {statistics.median(ms) * 1e3:.2f} ({ms[0] * 1e3:.2f}-{ms[-1] * 1e3:.2f}) "
            f"| {statistics.median(speed):.2f}x ({speed[0]:.2f}-{speed[-1]:.2f}) "
            f"| {statistics.median(decode):.2f}x ({decode[0]:.2f}-{decode[-1]:.2f}) "
            f"| {statistics.median(figures['bytes_per_sample']) / 1e6:.2f} MB |"
        )
    return "\n".join(lines)


def train_step_lines(args, report: dict) -> list:
    """The train-step comparison's table, its figures put into ``report["train_step"]``."""
    steps = bench_train_step(args.device, args.train_size, args.train_steps)
    stock = steps["stock R50-FPN (RGB)"]
    report["train_step"] = {"size": args.train_size, "device": args.device, "seconds": steps}
    lines = [
        "",
        f"| Mask R-CNN train step, {args.train_size[0]}x{args.train_size[1]} px, batch 2, {args.device} "
        "| ms/step | vs stock |",
        "|---|---:|---:|",
    ]
    return lines + [f"| {name} | {s * 1e3:.1f} | {s / stock:.2f}x |" for name, s in steps.items()]


def predict_lines(paths: list, args, report: dict) -> list:
    """The inference comparison's table, its figures put into ``report["predict"]``."""
    predicted = bench_predictors(paths, args.predict_rounds, args.device, tuple(args.predict_size))
    stock = next(iter(predicted.values()))[0]
    report["predict"] = {
        name: {"seconds_per_image": sec, "detections_per_image": det} for name, (sec, det) in predicted.items()
    }
    lines = [
        "",
        f"| Faster R-CNN inference, file to Instances, test size {args.predict_size[0]} / {args.predict_size[1]}, "
        f"one thread, {args.device} | ms/image | speed vs stock | detections/image |",
        "|---|---:|---:|---:|",
    ]
    return lines + [
        f"| {name} | {sec * 1e3:.1f} | {stock / sec:.2f}x | {det:.0f} |" for name, (sec, det) in predicted.items()
    ]


def run(args) -> int:
    """The comparisons ``main`` asked for; prints the tables and writes them under ``args.output``."""
    missing = [path for path in args.images or [] if not os.path.isfile(path)]
    if missing:
        print(f"--images: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    dicts = photos(args.demo_images, args.images)
    host = f"{describe_machine()}; CPU transform: {kernel_routines()}"
    print(f"Benchmarking on {len(dicts)} JPEGs; {host}", file=sys.stderr)
    if args.deploy:
        report = {"machine": host, "images": [d["file_name"] for d in dicts]}
        return write_report(deploy_lines(report["images"], args, report), report, args.output)
    variants = mapper_variants(args.channels, args.wires)
    lsj = lsj_variants(args.lsj_size) if args.lsj_size else []
    mappers = bench_mappers(dicts, variants + lsj, args.rounds)
    report = {"machine": host, "images": [d["file_name"] for d in dicts], "mappers": {}}
    lines = mapper_lines(mappers, variants, lsj, report, args)

    if args.memory > 0:
        if not args.lsj_size:
            print("--memory needs the LSJ rows: give --lsj-size a crop size", file=sys.stderr)
            return 2
        probed = bench_memory([d["file_name"] for d in dicts], args.memory, args.lsj_size)
        report["loader_memory"] = {"samples": args.memory, "lsj_size": args.lsj_size, "probes": probed}
        lines += memory_lines(probed, args.memory, args.lsj_size, len(dicts))

    if args.stages:
        staged = [v for v in variants if v[0] == DECODE_ONLY or (v[0].startswith("DCT-") and "device" not in v[0])]
        table = bench_stages(dicts, staged, args.rounds)
        report["stages_ms_per_image"] = table
        lines += ["", f"Where the time goes ({args.rounds} rounds, mean ms per image, one thread):", ""]
        lines += stage_lines(table)

    if args.train_steps > 0:
        lines += train_step_lines(args, report)
    if args.predict_rounds > 0:
        lines += predict_lines([d["file_name"] for d in dicts], args, report)

    if args.device == "cuda":
        picked = [v for v in variants if v[0].startswith(("stock", "DCT-24"))]
        moved = bench_loader_to_gpu(dicts, picked, args.workers, epochs=2)
        report["loader_to_gpu"] = {
            name: {"images_per_s": ips, "bytes_per_s": bps} for name, (ips, bps) in moved.items()
        }
        lines += [
            "",
            f"| DataLoader ({args.workers} workers, pinned) to normalized input on the GPU "
            "| images/s | MB/s to the GPU |",
            "|---|---:|---:|",
        ]
        lines += [f"| {name} | {ips:.1f} | {bps / 1e6:.1f} |" for name, (ips, bps) in moved.items()]

    return write_report(lines, report, args.output)


def write_report(lines: list, report: dict, output: str) -> int:
    """Print the tables; write them and the raw figures to ``output``."""
    table = "\n".join(lines)
    print(table)
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "benchmark.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(output, "benchmark.md"), "w") as f:
        f.write(table + "\n")
    print(f"wrote {output}/benchmark.json and benchmark.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

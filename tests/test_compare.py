"""tools/compare.py: each config trained once per seed, AP read from each run, mean ± std, resumable."""

import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "compare.py"
CONFIGS = ["configs/demo/mask_rcnn_dct_demo.yaml", "configs/demo/mask_rcnn_rgb_demo.yaml"]
# A few iterations of slimmed demo models on 64-pixel images: seconds per run.
TINY = [
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "96",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "96",
    "MODEL.DCT.STATS_NUM_IMAGES",
    "4",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.WARMUP_ITERS",
    "2",
    "SOLVER.STEPS",
    "()",
    "TEST.VIS_IMAGES",
    "0",
    "TEST.DETECTIONS_PER_IMAGE",
    "20",
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    "MODEL.ROI_MASK_HEAD.CONV_DIM",
    "16",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "100",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
]


def compare(output, *args, opts=TINY):
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            str(TOOL),
            "--configs",
            *CONFIGS,
            "--seeds",
            "2",
            "--jobs",
            "2",
            "--output",
            str(output),
            *args,
            *opts,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def strict(text):
    """JSON parsed as strictly as a browser or jq would: NaN and Infinity are refused."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def last_evaluation(metrics_path):
    """The last metrics.json line with an evaluation, read independently of the tool."""
    lines = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    return [line for line in lines if "bbox/AP" in line][-1]


def without_timings(record):
    return {k: v for k, v in record.items() if "time" not in k and "eta" not in k}


def run_folder(output, config, seed):
    return output / pathlib.Path(config).stem / f"seed{seed}"


@pytest.fixture(scope="module")
def tool():
    """tools/compare.py as a module, for calls in this process."""
    spec = importlib.util.spec_from_file_location("compare_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compared(module_tmp):
    """Two tiny configs x two seeds, two runs at a time."""
    output = module_tmp("compare")
    result = compare(output)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result.stdout


@pytest.mark.slow
def test_every_config_and_seed_is_trained_with_its_seed(compared):
    output, _ = compared
    for config in CONFIGS:
        for seed in (0, 1):
            folder = run_folder(output, config, seed)
            written = yaml.safe_load((folder / "config.yaml").read_text())  # Detectron2's dump of the run's config
            assert written["SEED"] == seed and written["SOLVER"]["MAX_ITER"] == 4
            assert written["OUTPUT_DIR"] == str(folder)
        first = [json.loads(line) for line in (run_folder(output, config, 0) / "metrics.json").read_text().splitlines()]
        second = [
            json.loads(line) for line in (run_folder(output, config, 1) / "metrics.json").read_text().splitlines()
        ]
        assert first[0]["total_loss"] != second[0]["total_loss"], "two seeds trained identically"


@pytest.mark.slow
def test_table_and_json_hold_each_runs_ap_with_mean_and_std(compared):
    output, stdout = compared
    report = strict((output / "comparison.json").read_text())
    for result in output.glob("*/seed*/result.json"):
        strict(result.read_text())
    assert report["seeds"] == [0, 1] and report["overrides"] == TINY and report["configs"] == CONFIGS
    assert [row["config"] for row in report["summary"]] == CONFIGS
    table = (output / "comparison.md").read_text().strip()
    assert table in stdout
    for row in report["summary"]:
        evaluations = [last_evaluation(run_folder(output, row["config"], seed) / "metrics.json") for seed in (0, 1)]
        assert row["seeds"] == [0, 1]
        cells = []
        for task in ("bbox", "segm"):
            values = [e[f"{task}/AP"] for e in evaluations]
            assert row[task]["values"] == values and row[task]["metric"] == "AP"
            assert row[task]["mean"] == pytest.approx(np.mean(values))
            assert row[task]["std"] == pytest.approx(np.std(values, ddof=1))
            cells.append(f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}")
        line = next(line for line in table.splitlines() if row["config"] in line)
        assert line.split("|")[3:5] == [f" {c} " for c in cells]
        assert line.split("|")[5].strip() == ", ".join(f"{e['bbox/AP']:.1f}" for e in evaluations)
    assert sorted((r["config"], r["seed"]) for r in report["runs"]) == sorted((c, s) for c in CONFIGS for s in (0, 1))


@pytest.mark.slow
def test_picture_is_written(compared):
    output, _ = compared
    with Image.open(output / "comparison.png") as picture:
        assert picture.format == "PNG" and picture.width > picture.height > 100


@pytest.mark.slow
def test_second_invocation_reuses_finished_runs_and_redoes_an_interrupted_one(compared):
    output, _ = compared
    interrupted = run_folder(output, CONFIGS[1], 1)
    before = last_evaluation(interrupted / "metrics.json")
    (interrupted / "result.json").unlink()  # as if killed before its result was recorded
    finished = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in output.glob("*/seed*/result.json")}
    assert len(finished) == 3
    result = compare(output)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 finished before, reused; 1 to run" in result.stdout
    assert re.findall(r"starting (\S+ seed \d)", result.stdout) == ["mask_rcnn_rgb_demo seed 1"]
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in finished} == finished
    # The same seed repeats the same run, so the redone run reads as before.
    assert without_timings(last_evaluation(interrupted / "metrics.json")) == without_timings(before)
    assert (interrupted / "result.json").exists()


@pytest.mark.slow
def test_changed_overrides_do_not_reuse_runs_of_another_config(compared, tool, capsys):
    output, _ = compared
    with pytest.raises(
        SystemExit,
        match=r"result.json records a run .* \(SOLVER.BASE_LR: 0.02 then, 0.01 now\): remove that run.s folder",
    ):
        tool.main(["--configs", *CONFIGS, "--seeds", "2", "--output", str(output), *TINY, "SOLVER.BASE_LR", "0.01"])
    assert "starting" not in capsys.readouterr().out


def test_bad_arguments_are_named(tool, tmp_path):
    with pytest.raises(SystemExit, match="config file 'SOLVER.MAX_ITER' not found"):
        tool.main(["--configs", CONFIGS[0], "SOLVER.MAX_ITER", "2", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"share the file name \['mask_rcnn_dct_demo'\]"):
        tool.main(["--configs", CONFIGS[0], CONFIGS[0], "--output", str(tmp_path)])


class FakeRun:
    def __init__(self, config, seed):
        self.config, self.name, self.seed = config, pathlib.Path(config).stem, seed


def test_summary_and_table_of_given_results(tool):
    runs = [FakeRun(c, s) for s in (0, 1, 2) for c in ("a.yaml", "b.yaml")]
    box = {("a.yaml", 0): 40.0, ("a.yaml", 1): 44.0, ("a.yaml", 2): 45.5, ("b.yaml", 0): 30.0}
    results = {r: {"seed": r.seed, "bbox": {"AP": box[(r.config, r.seed)]}} for r in runs if (r.config, r.seed) in box}
    results[runs[0]]["segm"] = {"AP": 50.0, "AP50": 90.0}
    rows = tool.summarize(runs, results)
    assert rows[0]["bbox"]["mean"] == pytest.approx(np.mean([40.0, 44.0, 45.5])) and rows[0]["seeds"] == [0, 1, 2]
    assert rows[0]["bbox"]["std"] == pytest.approx(np.std([40.0, 44.0, 45.5], ddof=1))
    assert rows[1]["bbox"]["std"] is None and "segm" not in rows[1]
    lines = tool.table(rows).splitlines()
    assert lines[2] == "| `a.yaml` | 0, 1, 2 | 43.2 ± 2.8 | 50.0 | 40.0, 44.0, 45.5 | 50.0 |"
    assert lines[3] == "| `b.yaml` | 0 | 30.0 | - | 30.0 | - |"


def test_each_tasks_headline_figure_is_read_and_tabled(tool, tmp_path):
    """Keypoint AP, mIoU and PQ are read from the last evaluation as the evaluators name them."""
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        '{"iteration": 2, "sem_seg/mIoU": 10.0}\n'
        '{"iteration": 3, "total_loss": 1.5}\n'
        '{"iteration": 4, "sem_seg/mIoU": 61.25, "sem_seg/fwIoU": 70.0, "keypoints/AP": 33.5, '
        '"panoptic_seg/PQ": 41.0, "panoptic_seg/SQ": 70.0}\n'
    )
    read = tool.final_metrics(str(metrics))
    assert read == {
        "sem_seg": {"mIoU": 61.25, "fwIoU": 70.0},
        "keypoints": {"AP": 33.5},
        "panoptic_seg": {"PQ": 41.0, "SQ": 70.0},
    }
    runs = [FakeRun("s.yaml", 0), FakeRun("s.yaml", 1)]
    results = {runs[0]: {"seed": 0, **read}, runs[1]: {"seed": 1, "sem_seg": {"mIoU": 58.75}}}
    rows = tool.summarize(runs, results)
    assert rows[0]["sem_seg"] == {
        "metric": "mIoU",
        "seeds": [0, 1],
        "no_predictions": [],
        "values": [61.25, 58.75],
        "mean": 60.0,
        "std": pytest.approx(np.std([61.25, 58.75], ddof=1)),
    }
    lines = tool.table(rows).splitlines()
    assert lines[0] == (
        "| config | seeds | keypoint AP | mIoU | PQ | keypoint AP per seed | mIoU per seed | PQ per seed |"
    )
    assert lines[2] == "| `s.yaml` | 0, 1 | 33.5 | 60.0 ± 1.8 | 41.0 | 33.5 | 61.2, 58.8 | 41.0 |"
    # A model that predicted nothing: Detectron2's NaN, null once written, counted as AP 0 and marked.
    results[runs[1]]["keypoints"] = {"AP": float("nan")}
    results[runs[0]]["keypoints"] = {"AP": None}
    rows = tool.summarize(runs, results)
    assert rows[0]["keypoints"]["values"] == [0.0, 0.0] and rows[0]["keypoints"]["no_predictions"] == [0, 1]
    lines = tool.table(rows).splitlines()
    assert lines[2].split("|")[3].strip() == "0.0 ± 0.0" and lines[2].split("|")[6].strip() == "0.0*, 0.0*"
    assert lines[-1].startswith("\\* the model predicted nothing")
    (tmp_path / "empty.json").write_text('{"iteration": 1, "total_loss": 2.0}\n')
    with pytest.raises(RuntimeError, match="holds none of .*sem_seg/mIoU.*the run evaluated nothing"):
        tool.final_metrics(str(tmp_path / "empty.json"))


def test_undefined_coco_metrics_are_null_in_strict_json(tool, tmp_path):
    metrics = tmp_path / "metrics.json"  # as Detectron2's JSONWriter writes it: NaN where COCO has no value
    metrics.write_text(
        '{"iteration": 3, "total_loss": 1.5}\n'
        '{"iteration": 4, "bbox/AP": 12.5, "bbox/APl": NaN, "segm/AP": 10.0, "segm/APs": Infinity}\n'
    )
    assert json.loads(metrics.read_text().splitlines()[1])["bbox/APl"] != 0  # NaN as Python reads it
    written = strict(tool.strict_json(tool.final_metrics(str(metrics))).decode())
    assert written == {"bbox": {"AP": 12.5, "APl": None}, "segm": {"AP": 10.0, "APs": None}}
    assert strict(tool.strict_json({"runs": [{"x": float("nan")}], "y": [1.0, float("-inf")]}).decode()) == {
        "runs": [{"x": None}],
        "y": [1.0, None],
    }

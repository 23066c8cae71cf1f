"""Faults during a run, each made real (a real signal, a real file-size limit, a real full disk, real
truncated files, a real read-only folder): one line naming the cause and the fix and a non-zero
exit, or recovery; and what is left on disk."""

import contextlib
import ctypes
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_NET = str(ROOT / "tools" / "train_net.py")

# The demo Mask R-CNN, shrunk: a few seconds of set-up, a fraction of a second per iteration.
SMALL = [
    "--config-file",
    "configs/demo/mask_rcnn_dct_demo.yaml",
    "MODEL.RESNETS.DEPTH",
    "18",
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MAX_SIZE_TRAIN",
    "200",
    "MODEL.DCT.STATS_NUM_IMAGES",
    "8",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.CHECKPOINT_PERIOD",
    "1",
    "DATASETS.TEST",
    "()",
    "TEST.VIS_IMAGES",
    "0",
]


def train_net(*args, cwd=ROOT, preexec_fn=None, timeout=400):
    return subprocess.run(
        [sys.executable, TRAIN_NET, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def one_line_error(result, status=2) -> str:
    """The run's one ``error:`` line, after checking there is no traceback and the exit status."""
    output = result.stdout + result.stderr
    assert result.returncode == status, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def checkpoints(folder: pathlib.Path):
    return sorted(p.name for p in folder.glob("*.pth"))


@pytest.fixture(scope="module")
def two_checkpoints(module_tmp):
    """A finished two-iteration run: model_0000000.pth, model_0000001.pth and model_final.pth (both
    iteration 1), last_checkpoint naming model_final.pth, and its statistics."""
    out = module_tmp("run")
    result = train_net(*SMALL, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoints(out) == ["model_0000000.pth", "model_0000001.pth", "model_final.pth"]
    return out


@pytest.fixture
def run_copy(two_checkpoints, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(two_checkpoints, folder)
    return folder


def truncate(path: pathlib.Path, keep: int = 2000) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.slow
def test_resume_recovers_from_an_unreadable_checkpoint_and_statistics_cache(run_copy):
    truncate(run_copy / "model_final.pth")
    truncate(run_copy / "dct_stats.json", 100)
    result = train_net("--resume", *SMALL, "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(run_copy))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"skipping {run_copy / 'model_final.pth'}, which cannot be read" in log
    assert f"resuming from {run_copy / 'model_0000001.pth'}, the newest checkpoint that can be read" in log
    assert "Starting training from iteration 2" in log
    assert torch.load(run_copy / "model_final.pth", weights_only=False)["iteration"] == 2
    # The statistics are a cache: recomputed, with a warning naming the file.
    assert f"cannot read DCT statistics from '{run_copy / 'dct_stats.json'}'" in log and "recomputing them" in log
    assert len(json.loads((run_copy / "dct_stats.json").read_text())["mean"]) == 192


@pytest.mark.slow
def test_resume_with_no_readable_checkpoint_names_them_all(run_copy):
    names = checkpoints(run_copy)
    for name in names:
        truncate(run_copy / name)
    message = one_line_error(train_net("--resume", *SMALL, "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(run_copy)))
    assert f"--resume found no readable checkpoint in {run_copy}" in message and "without --resume" in message
    assert all(f"{run_copy / name} (" in message for name in names)
    assert checkpoints(run_copy) == names


@pytest.mark.slow
def test_eval_only_with_truncated_weights_is_one_line(run_copy, tmp_path):
    weights = run_copy / "model_final.pth"
    truncate(weights)
    message = one_line_error(
        train_net("--eval-only", *SMALL, "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path / "eval"))
    )
    assert f"'{weights}' is not a readable PyTorch checkpoint" in message


def test_missing_weights_are_named():
    from detectron2.modeling import build_model
    from helpers import small_cfg

    from freqdet.detection.checkpoint import FreqdetCheckpointer

    with pytest.raises(FileNotFoundError, match=r"the weights file '/nonexistent/w.pth' does not exist"):
        FreqdetCheckpointer(build_model(small_cfg())).load("/nonexistent/w.pth")


def test_debug_or_its_environment_variable_keeps_the_traceback(monkeypatch, capsys):
    from freqdet.detection.cli import DEBUG_ENV, user_errors

    def fail():
        raise ValueError("bad value\n  on two lines")

    with pytest.raises(SystemExit) as stopped, user_errors((ValueError,)):
        fail()
    assert stopped.value.code == 2 and capsys.readouterr().err == "error: bad value on two lines\n"
    with pytest.raises(ValueError), user_errors((ValueError,), debug=True):
        fail()
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ValueError), user_errors((ValueError,)):
        fail()


def test_statistics_of_another_dataset_or_image_count_are_recomputed(tmp_path, caplog):
    from helpers import small_cfg

    from freqdet.detection.dataset_stats import ensure_dct_stats

    cfg = small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.STATS_NUM_IMAGES", 3, "OUTPUT_DIR", str(tmp_path)
    )
    path = tmp_path / "dct_stats.json"
    ensure_dct_stats(cfg)
    first = json.loads(path.read_text())
    assert first["datasets"] == ["freqdet_demo_train"] and first["images_asked"] == 3 and first["num_images"] == 3
    path.write_text(json.dumps(dict(first, datasets=["someone_elses"])))
    with caplog.at_level("WARNING", logger="freqdet"):
        ensure_dct_stats(cfg)
    assert "holds DCT statistics of other channels or settings" in caplog.text and "someone_elses" in caplog.text
    assert json.loads(path.read_text())["datasets"] == ["freqdet_demo_train"]
    cfg.MODEL.DCT.STATS_NUM_IMAGES = 4
    ensure_dct_stats(cfg)
    assert json.loads(path.read_text())["num_images"] == 4


@pytest.mark.slow
def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(f'_BASE_: "{ROOT / "configs" / "demo" / "mask_rcnn_dct_demo.yaml"}"\nSOLVER:\n  BASE_LR: [0.1\n')
    message = one_line_error(train_net("--config-file", str(broken)))
    assert message.startswith(f"error: config file {broken}, line 4, column 1: ")


def file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_checkpoint_too_large_to_write_keeps_the_previous_one(run_copy):
    size = (run_copy / "model_final.pth").stat().st_size
    before = (run_copy / "last_checkpoint").read_text()
    result = train_net(
        "--resume",
        *SMALL,
        "SOLVER.MAX_ITER",
        "4",
        "OUTPUT_DIR",
        str(run_copy),
        preexec_fn=file_size_limit(size // 2),
    )
    message = one_line_error(result)
    assert f"cannot save checkpoint {run_copy / 'model_0000002.pth'} (File too large; it needs" in message
    assert f"the previous checkpoint {run_copy / 'model_final.pth'} and last_checkpoint are intact" in message
    assert (run_copy / "last_checkpoint").read_text() == before
    assert checkpoints(run_copy) == ["model_0000000.pth", "model_0000001.pth", "model_final.pth"]
    assert not list(run_copy.glob("*.tmp-*"))
    assert torch.load(run_copy / "model_final.pth", weights_only=False)["iteration"] == 1


@pytest.fixture
def small_disk(tmp_path, two_checkpoints):
    """A tmpfs with room for one checkpoint of the small model, not two."""
    size = (two_checkpoints / "model_final.pth").stat().st_size * 3 // 2
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]).returncode:
        pytest.skip("this machine does not let the tests mount a small tmpfs (needs root and CAP_SYS_ADMIN)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_full_disk_is_found_before_writing(small_disk):
    result = train_net(*SMALL, "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(small_disk))
    message = one_line_error(result)
    assert f"cannot save checkpoint {small_disk / 'model_0000001.pth'}: it needs" in message
    assert "free; the previous checkpoint" in message and "model_0000000.pth and last_checkpoint are intact" in message
    assert (small_disk / "last_checkpoint").read_text() == "model_0000000.pth"
    assert checkpoints(small_disk) == ["model_0000000.pth"] and not list(small_disk.glob("*.tmp-*"))


def without_root_override():
    """Drop the capabilities that let root write into a folder whose mode says no, from the bounding
    set of the child about to run (so it obeys the folder's permissions as any user would)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if os.geteuid() == 0 and libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
def test_a_read_only_output_folder_is_refused_before_training(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    probe = subprocess.run(["touch", str(folder / "probe")], preexec_fn=without_root_override, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this machine's root can write into a read-only folder even without CAP_DAC_OVERRIDE")
    message = one_line_error(train_net(*SMALL, "OUTPUT_DIR", str(folder / "run"), preexec_fn=without_root_override))
    assert f"cannot write to the output folder '{folder / 'run'}' (Permission denied)" in message
    assert "set OUTPUT_DIR" in message and list(folder.iterdir()) == []


@contextlib.contextmanager
def started(*args, command=(TRAIN_NET,), env=None):
    """A training run in the background (output and errors on one pipe), killed if the test leaves it
    running; ``command``: what runs the tool (e.g. ``("-c", CPU_LAUNCH)``)."""
    run = subprocess.Popen(
        [sys.executable, *command, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONWARNINGS="ignore", **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Detectron2 logs to stdout; the one-line error goes to stderr
        text=True,
    )
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def wait_for(run, text: str, timeout: float = 300) -> str:
    """Read the run's output until ``text`` appears; what was read."""
    seen, deadline = "", time.time() + timeout
    for line in run.stdout:
        seen += line
        if text in line or time.time() > deadline:
            return seen
    return seen


def stop_with(run, signum=None, kill_children=False) -> str:
    """Once training has run a few seconds: send ``signum`` to the run, or kill its data-loader
    workers; the rest of its output."""
    seen = wait_for(run, "Starting training from iteration 0")
    assert "Starting training" in seen, seen[-3000:]
    time.sleep(3)
    if kill_children:
        workers = children(run.pid)
        assert workers, seen[-3000:]
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
    else:
        run.send_signal(signum)
    rest = run.stdout.read()
    run.wait(timeout=120)
    return rest


def children(pid: int):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


LONG = ["SOLVER.MAX_ITER", "2000", "SOLVER.CHECKPOINT_PERIOD", "1000"]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_current_iteration_and_resume_continues_from_it(tmp_path, signum):
    with started(*SMALL, *LONG, "OUTPUT_DIR", str(tmp_path)) as run:
        rest = stop_with(run, signum)
    assert run.returncode == 128 + signum, rest[-3000:]
    stopped = stopped_line(rest, signum, tmp_path)
    if signum != signal.SIGTERM:
        return  # resuming is the same whichever signal stopped the run
    resumed = train_net("--resume", *SMALL, "SOLVER.MAX_ITER", str(stopped + 2), "OUTPUT_DIR", str(tmp_path))
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert f"Starting training from iteration {stopped + 1}" in log


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_killed_data_loader_worker_stops_the_run_in_one_line(tmp_path):
    with started(*SMALL, *LONG, "DATALOADER.NUM_WORKERS", "1", "OUTPUT_DIR", str(tmp_path)) as run:
        rest = stop_with(run, kill_children=True)
    assert run.returncode == 2 and "Traceback" not in rest, rest[-3000:]
    (line,) = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert "the data loader failed at iteration" in line and "a worker process died" in line
    assert "lower DATALOADER.NUM_WORKERS" in line and "--resume" in line


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_images_that_vanish_mid_run_stop_it_naming_the_file(demo_dicts, tmp_path):
    from freqdet.demo.coco_shapes import split_paths

    images = tmp_path / "images"
    images.mkdir()
    for d in demo_dicts[:8]:
        shutil.copy(d["file_name"], images)
    annotations = json.loads(pathlib.Path(split_paths("train")[0]).read_text())
    kept = {os.path.basename(d["file_name"]) for d in demo_dicts[:8]}
    annotations["images"] = [i for i in annotations["images"] if i["file_name"] in kept]
    ids = {i["id"] for i in annotations["images"]}
    annotations["annotations"] = [a for a in annotations["annotations"] if a["image_id"] in ids]
    (tmp_path / "train.json").write_text(json.dumps(annotations))
    register = ["--register-coco", "mine", str(tmp_path / "train.json"), str(images)]
    mine = ["DATASETS.TRAIN", "('mine',)", "DATALOADER.NUM_WORKERS", "1", "OUTPUT_DIR", str(tmp_path / "run")]
    with started(*register, *SMALL, *LONG, *mine) as run:
        wait_for(run, "Starting training from iteration 0")
        shutil.rmtree(images)
        rest = run.stdout.read()
        run.wait(timeout=120)
    assert run.returncode == 2 and "Traceback" not in rest, rest[-3000:]
    (line,) = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert f"cannot decode image '{images}/" in line and "No such file or directory" in line
    assert "set INPUT.DCT.ON_BAD_IMAGE skip" in line and "--resume" in line


# Detectron2's launch, but with processes forked on the CPU and joined by gloo (Detectron2's own
# launch and its DDP wrapper need GPUs for more than one process): multi-process runs on a CPU.
CPU_LAUNCH = r"""
import runpy, socket, sys
import detectron2.engine, detectron2.engine.defaults as defaults, detectron2.utils.comm as comm
import torch.distributed as dist, torch.multiprocessing as mp, torch.nn.parallel

class CpuDDP(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, device_ids=None, **kwargs):  # create_ddp_model names the GPU of the rank
        super().__init__(module, **kwargs)

defaults.DistributedDataParallel = CpuDDP

def worker(rank, main, world, port, args):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=world, rank=rank)
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world)))
    main(*args)

def launch(main, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(), timeout=None):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(worker, args=(main, num_gpus_per_machine, port, args), nprocs=num_gpus_per_machine,
                       start_method="fork")

detectron2.engine.launch = launch
sys.argv = ["train_net.py"] + sys.argv[1:]
runpy.run_path("tools/train_net.py", run_name="__main__")
"""


@pytest.mark.slow
def test_a_config_error_in_a_two_process_run_is_one_line():
    result = subprocess.run(
        [sys.executable, "-c", CPU_LAUNCH, "--num-gpus", "2", *SMALL, "MODEL.DCT.CHANNELS", "25"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Printed once, by the command, for whichever process reported first.
    assert re.match(r"error: (\[process 1\] )?bad channel selection in cfg.MODEL.DCT", one_line_error(result))


def stopped_line(rest: str, signum: int, folder: pathlib.Path) -> int:
    """The iteration of the run's one line saying it stopped on ``signum`` and saved it (checked)."""
    lines = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in rest, rest[-3000:]
    stopped = int(lines[0].split("after iteration ")[1].split(":")[0])
    saved = folder / f"model_{stopped:07d}.pth"
    name = signal.Signals(signum).name
    expected = f"error: training stopped by {name} after iteration {stopped}: saved {saved}; continue with --resume"
    assert lines[0] == expected
    assert torch.load(saved, weights_only=False)["iteration"] == stopped
    assert (folder / "last_checkpoint").read_text() == saved.name
    assert not list(folder.glob("*.tmp-*"))
    return stopped


EVALUATING = ["DATASETS.TEST", "('freqdet_demo_val',)", "TEST.EVAL_PERIOD", "3", "SOLVER.CHECKPOINT_PERIOD", "1000"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_signal_during_evaluation_stops_it_within_seconds_and_saves_the_last_step(tmp_path):
    with started(*SMALL, "SOLVER.MAX_ITER", "2000", *EVALUATING, "OUTPUT_DIR", str(tmp_path)) as run:
        seen = wait_for(run, "Start inference on")
        assert "Start inference on" in seen, seen[-3000:]
        time.sleep(0.5)
        sent = time.monotonic()
        run.send_signal(signal.SIGTERM)
        rest = run.stdout.read()
        run.wait(timeout=120)
        took = time.monotonic() - sent
    assert run.returncode == 128 + signal.SIGTERM, rest[-3000:]
    assert stopped_line(rest, signal.SIGTERM, tmp_path) == 2  # the evaluation after iteration 2 (of 0, 1, 2)
    assert "Evaluation results" not in rest and "SIGTERM received between training steps" in rest
    assert took < 15, f"the run took {took:.1f} s to stop after the signal"


class Tiny(torch.nn.Module):
    """A model Detectron2's SimpleTrainer can step: its loss is a dict."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def forward(self, batch):
        return {"loss": self.w(batch).pow(2).mean()}


def signalled_at(iteration: int):
    """An endless data loader that sends this process SIGTERM while the step of ``iteration`` reads it."""
    step = 0
    while True:
        if step == iteration:
            os.kill(os.getpid(), signal.SIGTERM)
        yield torch.ones(4, 2)
        step += 1


def in_process_run(tmp_path, before_ours, after_ours, signal_at=None):
    """Detectron2's SimpleTrainer on :class:`Tiny`, with freqdet's checkpointer and interruption hook
    placed as the tools place it (right after the LR scheduler's); the RunInterrupted it ends with."""
    from detectron2.engine import SimpleTrainer, hooks
    from detectron2.utils.events import EventStorage

    from freqdet.detection.checkpoint import FreqdetCheckpointer
    from freqdet.detection.interruption import InterruptionHook, RunInterrupted, place_interruption
    from freqdet.detection.trainer import training_stops

    torch.manual_seed(0)
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = signalled_at(signal_at) if signal_at is not None else iter(lambda: torch.ones(4, 2), None)
    trainer = SimpleTrainer(model, data, optimizer)
    interruption = InterruptionHook(FreqdetCheckpointer(model, str(tmp_path), optimizer=optimizer))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 5)
    trainer.register_hooks(
        place_interruption([*before_ours, hooks.LRScheduler(optimizer, scheduler), *after_ours], interruption)
    )
    with pytest.raises(RunInterrupted) as stopped, EventStorage(0):
        with training_stops(trainer, interruption):
            trainer.train(0, 50)
    saved = torch.load(stopped.value.checkpoint, weights_only=False)
    assert saved["iteration"] == stopped.value.iteration
    for name, value in model.state_dict().items():  # the weights it saved are those the model holds
        assert torch.equal(saved["model"][name], value), name
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    return stopped.value


def recording_hook(name: str, calls: list, act=None):
    """A hook whose after_step appends (``name``, iteration) to ``calls``, then runs ``act(iteration)``."""
    from detectron2.engine import HookBase

    class Recording(HookBase):
        def after_step(self):
            calls.append((name, self.trainer.iter))
            if act:
                act(self.trainer.iter)

    return Recording()


def test_a_signal_in_a_step_saves_it_before_that_steps_evaluation(tmp_path):
    calls = []
    stopped = in_process_run(tmp_path, [], [recording_hook("evaluation", calls)], signal_at=7)
    assert stopped.iteration == 7 and stopped.signum == signal.SIGTERM
    assert ("evaluation", 6) in calls and ("evaluation", 7) not in calls


def test_an_error_in_a_hook_after_a_signal_saves_the_iteration_the_weights_hold(tmp_path):
    def fail(iteration):
        if iteration == 4:
            raise RuntimeError("a hook's own failure")

    stopped = in_process_run(tmp_path, [recording_hook("timer", [], fail)], [], signal_at=4)
    assert stopped.iteration == 4  # the step ran; the hook that failed ran after it


def test_a_signal_during_an_evaluation_stops_it_at_once_and_saves_its_step(tmp_path):
    calls = []

    def evaluate(iteration):
        if iteration == 5:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # stopped at once, not after 30 s
            calls.append(("evaluation finished", iteration))

    started_at = time.monotonic()
    stopped = in_process_run(tmp_path, [], [recording_hook("evaluation", calls, evaluate)])
    assert stopped.iteration == 5 and time.monotonic() - started_at < 10
    assert ("evaluation finished", 5) not in calls


def ended_pid() -> int:
    """The PID of a process that has ended (a save it made would be a leftover)."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(ended.stdout)


def test_leftovers_of_interrupted_saves_are_removed_and_no_others(tmp_path):
    from freqdet.atomic_write import remove_leftovers

    gone, alive = ended_pid(), os.getppid()
    names = [f"model_0000009.pth.tmp-{gone}", f"last_checkpoint.tmp-{os.getpid()}", f"model_final.pth.tmp-{alive}"]
    names += [f"notes.txt.tmp-{gone}", "model_0000001.pth"]
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 10)
    removed = remove_leftovers(str(tmp_path), lambda n: n.endswith(".pth") or n == "last_checkpoint")
    assert sorted(removed) == sorted((str(tmp_path / n), 10) for n in names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


@pytest.mark.slow
def test_a_leftover_of_an_interrupted_save_does_not_fill_the_disk(small_disk, two_checkpoints):
    leftover = small_disk / f"model_0000005.pth.tmp-{ended_pid()}"
    shutil.copy(two_checkpoints / "model_final.pth", leftover)  # a save killed at its last byte
    args = [*SMALL, "SOLVER.MAX_ITER", "1", "SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", str(small_disk)]
    result = train_net(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Removed {leftover}" in result.stdout + result.stderr
    assert checkpoints(small_disk) == ["model_final.pth"] and not list(small_disk.glob("*.tmp-*"))


def workers_of(pid: int):
    """The processes the launching process ``pid`` forked (they share its command line)."""
    own = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    return [c for c in children(pid) if pathlib.Path(f"/proc/{c}/cmdline").read_bytes() == own]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("target", ["the launching process", "the second worker"])
def test_a_signal_to_a_two_process_run_saves_one_checkpoint_and_says_one_line(tmp_path, target):
    temporary, out = tmp_path / "tmp", tmp_path / "run"
    temporary.mkdir()
    args = ["--num-gpus", "2", *SMALL, *LONG, "OUTPUT_DIR", str(out)]
    with started(*args, command=("-c", CPU_LAUNCH), env={"TMPDIR": str(temporary)}) as run:
        seen = wait_for(run, "Starting training from iteration 0")
        assert "Starting training" in seen, seen[-3000:]
        time.sleep(3)
        workers = workers_of(run.pid)
        assert len(workers) == 2, seen[-3000:]
        os.kill(run.pid if target == "the launching process" else max(workers), signal.SIGTERM)
        rest = run.stdout.read()
        run.wait(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, rest[-3000:]
    stopped = stopped_line(rest, signal.SIGTERM, out)
    assert checkpoints(out) == [f"model_{stopped:07d}.pth"]
    assert not list(temporary.glob("freqdet-errors-*"))  # the launching process's error folder is gone
    assert not [pid for pid in workers if pathlib.Path(f"/proc/{pid}").exists()]

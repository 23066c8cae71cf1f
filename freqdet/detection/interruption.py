"""A training run interrupted by SIGTERM (a scheduler) or Ctrl-C (SIGINT) saves the last iteration
it finished before it stops, so that ``--resume`` loses at most the iteration in flight.

:class:`InterruptionHook` installs handlers for both signals while training (in the main
thread of each process; DataLoader workers forked meanwhile inherit them and go on, so the
step being run finishes with its data). A signal during a training step is taken at the end
of that step, before the step's evaluation and periodic checkpoint (the hook sits right after
the LR scheduler's): the main process saves ``model_{iteration}.pth`` and every process stops
with :class:`RunInterrupted`; in a distributed run the processes agree first, so they stop at
the same iteration. A signal outside a step (an evaluation, a hook, a periodic save) stops what
is running at once and saves the last finished step. A step the signal cut short (its
data-loader workers stopped by it) saves the iteration before it. A repeat of the signal within
:data:`REPEAT_SECONDS`, or while the checkpoint is written, is the same request (the launching
process forwards signals to its workers; torch's launch stops the others when one ends); a
later one stops at once, as the signal's default would.

In a multi-process run, :func:`forwarding_signals` in the launching process passes a signal on
to every worker, and a worker that gets one passes it to the launching process, so that all of
them stop together whichever was signalled.
"""

import logging
import multiprocessing
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Dict, Optional

import detectron2.utils.comm as comm
import torch
import torch.distributed as dist
from detectron2.engine import HookBase, hooks

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_SECONDS = 3.0
LAUNCHER_ENV = "FREQDET_LAUNCHER_PID"


class StopNow(Exception):
    """A signal arrived outside a training step: what was running (an evaluation, a hook) stops."""


class RunInterrupted(Exception):
    """Training stopped on a signal after saving the iteration it was on."""

    def __init__(self, signum: int, iteration: int, checkpoint: Optional[str]):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        name = signal.Signals(signum).name
        if iteration < 0:
            message = f"training stopped by {name} before its first iteration ended: nothing to save"
        else:
            saved = f"saved {checkpoint}" if checkpoint else "saved by the main process"
            message = f"training stopped by {name} after iteration {iteration}: {saved}; continue with --resume"
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process ended by it."""
        return 128 + self.signum


class InterruptionHook(HookBase):
    """Saves the last finished iteration and stops the run when SIGTERM or SIGINT arrives. Register
    it right after the LR scheduler's hook (:func:`place_interruption`)."""

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer
        self.signum: Optional[int] = None
        self.completed = -1  # the last iteration whose step finished
        self._previous: Dict[int, object] = {}
        self._pid = os.getpid()
        self._in_step = False
        self._saving = False
        self._first_at = 0.0
        self._tracking = False

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a data-loader worker forked with the handler: it finishes its work
            return
        now = time.monotonic()
        if self.signum is not None:
            if self._saving or now - self._first_at < REPEAT_SECONDS:
                return  # the same request, forwarded
            self._restore()  # a second one: stop now
            signal.raise_signal(signum)
            return
        self.signum, self._first_at = signum, now
        _tell_launcher(signum)
        name = signal.Signals(signum).name
        if self._in_step:
            logger.warning(
                f"{name} received: saving a checkpoint at the end of this iteration, then stopping (send it again "
                f"after {REPEAT_SECONDS:.0f} s to stop at once)"
            )
            return
        logger.warning(f"{name} received between training steps: stopping now, saving iteration {self.completed}")
        raise StopNow(name)

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def before_train(self):
        trainer = self.trainer
        self.completed = trainer.start_iter - 1
        run_step = trainer.run_step

        def tracked_step():
            self._in_step = True
            try:
                run_step()
            finally:
                self._in_step = False
            self.completed = trainer.iter

        trainer.run_step = tracked_step
        self._tracking = True
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def after_train(self):
        if self._tracking:  # not if an earlier hook's before_train raised
            del self.trainer.run_step  # the class's own again
            self._tracking = False
        if self.signum is None:  # else kept until the checkpoint is written (stop)
            self._restore()

    def after_step(self):
        signum = self._agreed_signal()
        if signum is not None:
            self.signum = self.signum or signum
            interrupted = self.stop(self.trainer.iter)
            comm.synchronize()  # every process stops after the checkpoint is written
            raise interrupted

    def stop(self, iteration: int) -> RunInterrupted:
        """Save ``iteration`` (the last one completed; none if negative) and say so."""
        path = None
        self._saving = True
        try:
            if iteration >= 0 and comm.is_main_process():
                name = f"model_{iteration:07d}"
                self.checkpointer.save(name, iteration=iteration)
                path = os.path.join(self.checkpointer.save_dir, f"{name}.pth")
        finally:
            self._saving = False
            self._restore()
        return RunInterrupted(self.signum, iteration, path)

    def _agreed_signal(self) -> Optional[int]:
        """The signal any process received (the same answer in all of them), or None."""
        if comm.get_world_size() == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


def place_interruption(hook_list: list, interruption: InterruptionHook) -> list:
    """``hook_list`` with ``interruption`` right after its LR scheduler's hook (first if it has none):
    a stopping step's LR is stepped, as its checkpoint needs, and its evaluation does not run."""
    at = next((i + 1 for i, h in enumerate(hook_list) if isinstance(h, hooks.LRScheduler)), 0)
    return hook_list[:at] + [interruption] + hook_list[at:]


def _tell_launcher(signum: int) -> None:
    """In a worker of a multi-process run, pass the signal to the launching process, which passes it to
    every worker (this one takes the copy as a repeat)."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher and int(launcher) != os.getpid() and comm.get_world_size() > 1:
        try:
            os.kill(int(launcher), signum)
        except OSError:
            pass  # the launching process is gone: nothing to tell


@contextmanager
def forwarding_signals():
    """In the launching process of a multi-process run (around Detectron2's ``launch``): SIGTERM and
    SIGINT passed on to every worker it started, once per request (repeats within
    :data:`REPEAT_SECONDS` dropped), so that each saves and stops as :class:`InterruptionHook` does.
    Without workers (a one-process run, in this process) a signal does what its default does. Yields
    a dict whose "signum" is the signal received, if any."""
    received = {"signum": None, "at": 0.0}
    pid = os.getpid()

    def forward(signum, frame):
        if os.getpid() != pid:  # a worker forked with it, before its training installs its own
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        children = multiprocessing.active_children()
        if not children:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
            return
        now = time.monotonic()
        if received["signum"] == signum and now - received["at"] < REPEAT_SECONDS:
            return
        received.update(signum=signum, at=now)
        for child in children:
            try:
                os.kill(child.pid, signum)
            except OSError:
                pass  # it has just ended

    os.environ[LAUNCHER_ENV] = str(pid)
    previous = {s: signal.signal(s, forward) for s in SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        del os.environ[LAUNCHER_ENV]

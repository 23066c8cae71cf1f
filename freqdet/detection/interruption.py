"""A training run interrupted by SIGTERM (a scheduler) or Ctrl-C (SIGINT) saves the iteration it
was on before it stops, so that ``--resume`` loses at most the iteration in flight.

:class:`InterruptionHook` installs handlers for both signals while training (in the main
thread of each process; DataLoader workers forked meanwhile inherit them and go on, so the
step being run finishes with its data). At the end of the step in which a signal arrived,
the main process saves ``model_{iteration}.pth`` and every process stops with
:class:`RunInterrupted`; in a distributed run the processes agree first, so they stop at the
same iteration. A step the signal cut short (its data-loader workers stopped by it) saves the
iteration before it instead. A second signal stops at once, as the signal's default would.
"""

import logging
import os
import signal
import threading
from typing import Dict, Optional

import detectron2.utils.comm as comm
import torch
import torch.distributed as dist
from detectron2.engine import HookBase

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    """Saves a checkpoint of the current iteration and stops the run when SIGTERM or SIGINT arrives."""

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._pid = os.getpid()

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a data-loader worker forked with the handler: it finishes its work
            return
        if self.signum is not None:  # the second one: stop now
            self._restore()
            signal.raise_signal(signum)
            return
        self.signum = signum
        logger.warning(
            f"{signal.Signals(signum).name} received: saving a checkpoint at the end of this iteration, then "
            "stopping (send it again to stop at once)"
        )

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def before_train(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def after_train(self):
        self._restore()

    def after_step(self):
        signum = self._agreed_signal()
        if signum is not None:
            self.signum = signum
            interrupted = self.stop(self.trainer.iter)
            comm.synchronize()  # every process stops after the checkpoint is written
            raise interrupted

    def stop(self, iteration: int) -> RunInterrupted:
        """Save ``iteration`` (the last one completed; none if negative) and say so."""
        path = None
        if iteration >= 0 and comm.is_main_process():
            name = f"model_{iteration:07d}"
            self.checkpointer.save(name, iteration=iteration)
            path = os.path.join(self.checkpointer.save_dir, f"{name}.pth")
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

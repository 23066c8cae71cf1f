"""Detectron2's checkpointer, made crash-safe, safe to load from, and aware of the DCT channels a model takes."""

import io
import os
import re
import shutil
from typing import List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..atomic_write import remove_leftovers, write_atomically
from ..normalization import ChannelMismatchError
from ..safe_load import UntrustedCheckpointError, check_array_pickle, load_checkpoint


class CheckpointError(ValueError):
    """``--resume`` found checkpoints, but none of them can be read."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, file too large, ...); the previous one is intact."""


def _newest_first(path: str) -> Tuple[bool, int, str]:
    """Sort key of a checkpoint file: model_final.pth, then model_NNNNNNN.pth by iteration, then the rest."""
    name = os.path.basename(path)
    number = re.fullmatch(r"model_(\d+)\.pth", name)
    return name == "model_final.pth", int(number.group(1)) if number else -1, name


class FreqdetCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose saves are atomic and whose channel errors name the file.

    - A checkpoint (and the ``last_checkpoint`` tag) is written to a temporary file and
      renamed into place, so a run killed during a save leaves the previous complete
      checkpoint as the last one, and ``--resume`` continues from it.
    - Loading weights of another channel selection is refused by the model itself
      (:class:`freqdet.normalization.ChannelNormalization`), whatever loads them; this
      checkpointer names the file in that error.
    - Files (``MODEL.WEIGHTS``, ``--resume``) are read without running code from them: a
      ``.pth`` with tensors and plain data only, a model-zoo ``.pkl`` with numpy arrays and
      plain data only; anything else is refused naming the file and ``--trust-checkpoint``
      (``trust=True``), which restores Detectron2's own loading.
    - Resuming takes the newest checkpoint that can be read: one that cannot (truncated,
      corrupt) is skipped with a warning saying why, and :class:`CheckpointError` lists them
      all if none can.
    - A save that cannot be written (no space left, a file-size limit) raises
      :class:`CheckpointSaveError` naming the file, the bytes it needs and the previous
      checkpoint, which stays intact, as does ``last_checkpoint``; free space is checked first.
    """

    def __init__(self, model, save_dir: str = "", *, trust: bool = False, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.trust = trust
        self._read_ahead: Optional[Tuple[str, dict]] = None  # the file get_checkpoint_file read to check it
        self.loaded_model_keys: frozenset = frozenset()  # the model keys of the weights last loaded

    def _load_model(self, checkpoint):
        self.loaded_model_keys = frozenset(checkpoint.get("model", {}))
        return super()._load_model(checkpoint)

    def _load_file(self, filename: str):
        if self._read_ahead is not None and self._read_ahead[0] == filename:
            loaded, self._read_ahead = self._read_ahead[1], None
            return loaded
        if self.trust:
            return super()._load_file(filename)
        if filename.endswith((".pkl", ".pyth")):
            if filename.endswith(".pkl"):
                check_array_pickle(filename)
            else:
                load_checkpoint(filename)
            return super()._load_file(filename)
        loaded = load_checkpoint(filename)  # Detectron2's own .pth reading, without pickled objects
        return loaded if "model" in loaded else {"model": loaded}

    def save(self, name: str, **kwargs) -> None:
        # fvcore's Checkpointer.save, with the file written whole or not at all.
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        save_file = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {save_file}")
        buffer = io.BytesIO()
        torch.save(data, buffer)
        payload = buffer.getbuffer()
        previous = super().get_checkpoint_file() if self.has_checkpoint() else ""
        kept = (
            f"the previous checkpoint {previous} and last_checkpoint are intact" if previous else "nothing was written"
        )
        for path, size in remove_leftovers(self.save_dir, lambda n: n.endswith(".pth") or n == "last_checkpoint"):
            self.logger.warning(f"Removed {path} ({size} bytes), left by a save that was interrupted")
        free = shutil.disk_usage(self.save_dir).free
        if free < len(payload):
            raise CheckpointSaveError(
                f"cannot save checkpoint {save_file}: it needs {len(payload)} bytes and the disk has {free} free; "
                f"{kept}. Free some space (or set OUTPUT_DIR on another disk) and continue with --resume"
            )
        try:
            write_atomically(save_file, lambda f: f.write(payload))
            self.tag_last_checkpoint(os.path.basename(save_file))
        except OSError as e:
            raise CheckpointSaveError(
                f"cannot save checkpoint {save_file} ({e.strerror or e}; it needs {len(payload)} bytes); {kept}. "
                "Free some space or lift the file-size limit, then continue with --resume"
            ) from e

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        write_atomically(path, lambda f: f.write(last_filename_basename.encode()))

    def get_checkpoint_file(self) -> str:
        """The newest checkpoint of the output folder that can be read: the one ``last_checkpoint``
        names, else the others from the newest (model_final, then by iteration), each unreadable
        one skipped with a warning; :class:`CheckpointError` listing them if none can be read."""
        tagged = super().get_checkpoint_file()
        others = sorted(set(self.get_all_checkpoint_files()) - {tagged}, key=_newest_first, reverse=True)
        candidates = ([tagged] if tagged else []) + others
        skipped: List[str] = []
        for path in candidates:
            try:
                self._read_ahead = (path, self._load_file(path))
            except UntrustedCheckpointError:
                raise
            except (OSError, ValueError, RuntimeError, EOFError) as e:
                skipped.append(f"{path} ({e})")
                self.logger.warning(f"--resume: skipping {path}, which cannot be read: {e}")
                continue
            if skipped:
                self.logger.warning(f"--resume: resuming from {path}, the newest checkpoint that can be read")
            return path
        raise CheckpointError(
            f"--resume found no readable checkpoint in {self.save_dir}: "
            + ("; ".join(skipped) if skipped else "last_checkpoint names none")
            + ". Start afresh without --resume (or with another OUTPUT_DIR), or restore a checkpoint"
        )

    def load(self, path: str, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"the weights file {path!r} does not exist (MODEL.WEIGHTS, or --resume's)")
        try:
            return super().load(path, *args, **kwargs)
        except ChannelMismatchError as e:
            raise ChannelMismatchError(e.theirs, e.ours, source=repr(path)) from None

"""Detectron2's checkpointer, made crash-safe, safe to load from, and aware of the DCT channels a model takes."""

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..atomic_write import write_atomically
from ..normalization import ChannelMismatchError
from ..safe_load import check_array_pickle, load_checkpoint


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
    """

    def __init__(self, model, save_dir: str = "", *, trust: bool = False, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.trust = trust

    def _load_file(self, filename: str):
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
        # fvcore's Checkpointer.save, with the file written atomically.
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        write_atomically(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        write_atomically(path, lambda f: f.write(last_filename_basename.encode()))

    def load(self, path: str, *args, **kwargs):
        try:
            return super().load(path, *args, **kwargs)
        except ChannelMismatchError as e:
            raise ChannelMismatchError(e.theirs, e.ours, source=repr(path)) from None

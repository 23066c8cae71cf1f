"""Detectron2's checkpointer, made crash-safe and aware of the DCT channels a model takes."""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .files import write_atomically


class FreqdetCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose saves are atomic and whose loads check the channel selection.

    - A checkpoint (and the ``last_checkpoint`` tag) is written to a temporary file and
      renamed into place, so a run killed during a save leaves the previous complete
      checkpoint as the last one, and ``--resume`` continues from it.
    - Weights of a frequency-domain model record the channels it takes (``dct_channels``);
      loading them into a model that selects other channels raises an error naming both,
      instead of Detectron2's warning about skipped parameters of mismatched shapes.
    """

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

    def _load_model(self, checkpoint):
        self.check_channels(checkpoint.get("model", {}), getattr(self, "_loading", "the checkpoint"))
        return super()._load_model(checkpoint)

    def load(self, path: str, *args, **kwargs):
        self._loading = path
        return super().load(path, *args, **kwargs)

    def check_channels(self, state: dict, source: str) -> None:
        theirs, ours = state.get("dct_channels"), getattr(self.model, "dct_channels", None)  # fvcore unwraps DDP
        if theirs is None or ours is None:
            return
        theirs = [int(i) for i in torch.as_tensor(theirs).flatten()]
        if theirs != ours.tolist():
            raise ValueError(
                f"{source} was trained on DCT channels {theirs} ({len(theirs)}), but the config selects "
                f"{ours.tolist()} ({len(ours)}): set MODEL.DCT.CHANNELS/PATTERN or MODEL.DCT.INDICES to "
                "the checkpoint's selection, or use weights trained for this one"
            )

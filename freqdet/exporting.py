"""Writing traced graphs with freqdet's metadata: TorchScript and ONNX files that freqdet.deploy reads.

One writer per format, for the detectors (:mod:`freqdet.detection.export`) and the classifiers
(:func:`classifier_metadata`) alike: a graph traced on a sample, its input and output names,
the axes whose sizes vary, and the metadata as JSON under :data:`freqdet.deploy.METADATA_KEY`
(an ONNX ``metadata_props`` entry, a TorchScript extra file). No Detectron2.
"""

import json
import os
import warnings
from contextlib import ExitStack, contextmanager
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .deploy import METADATA_KEY

FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
ONNX_OPSET = 17


@contextmanager
def quiet_tracer():
    """Without the tracer's warnings about Python values (checks and branches that hold for every
    input: asserts on shapes, class-agnostic heads; the sizes that vary are tensors of the graph)
    and torch's notices that TorchScript and the tracing ONNX exporter are deprecated (torch 2.9+)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        warnings.filterwarnings("ignore", message=r".*(torch\.jit\.\w+|TorchScript-based ONNX export).*deprecated")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        yield


def save_torchscript(graph: nn.Module, sample: Tuple[torch.Tensor, ...], path: str, metadata: Dict, **_) -> None:
    """``torch.jit.trace`` of ``graph`` on ``sample``, its metadata in the file."""
    with torch.no_grad(), quiet_tracer():
        traced = torch.jit.trace(graph, sample, check_trace=False)
        torch.jit.save(traced, path, _extra_files={METADATA_KEY: json.dumps(metadata)})


def save_onnx(
    graph: nn.Module,
    sample: Tuple[torch.Tensor, ...],
    path: str,
    metadata: Dict,
    dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None,
) -> None:
    """``torch.onnx.export``'s tracer (opset 17) on ``sample``, with ``dynamic_axes``; the metadata in
    the model's ``metadata_props``. Input and output names are the metadata's."""
    import onnx

    with torch.no_grad(), quiet_tracer():
        torch.onnx.export(
            graph,
            sample,
            path,
            input_names=metadata["inputs"],
            output_names=metadata["outputs"],
            dynamic_axes=dynamic_axes or {},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, path)


def write(
    graph: nn.Module,
    sample: Tuple[torch.Tensor, ...],
    fmt: str,
    path: str,
    metadata: Dict,
    dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None,
    contexts: Sequence[Callable] = (),
) -> str:
    """Write ``graph`` (eval mode) as ``fmt`` to ``path`` inside ``contexts`` (context managers the
    trace needs); returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context())
        (save_onnx if fmt == "onnx" else save_torchscript)(
            graph.eval(), sample, path, metadata, dynamic_axes=dynamic_axes
        )
    return path


def classifier_metadata(network, crop: int, classes: Sequence[str], statistics: Dict, fmt: str) -> Dict:
    """What freqdet.deploy needs to serve a classifier of :mod:`freqdet.classification`: the
    evaluation crop, the channels (int16 wire), the statistics, the class names."""
    import freqdet

    return {
        "freqdet_version": freqdet.__version__,
        "format": fmt,
        "task": "classification",
        "architecture": network.arch,
        "inputs": ["dct"],
        "outputs": ["logits"],
        "crop": int(crop),
        "channels": list(network.channels),
        "wire_dtype": "int16",
        "statistics": statistics,
        "classes": list(classes),
    }

"""A one-line description of the machine a measurement ran on, for reports."""

import os
import platform

import torch


def describe_machine() -> str:
    """CPU model and core count, the GPU if one is visible, Python and torch versions."""
    cpu = cpu_model() or platform.processor() or "unknown CPU"
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def cpu_model():
    """The CPU's model name from /proc/cpuinfo; None where that file does not exist (not Linux)
    or names no model, and the caller falls back to ``platform.processor()``."""
    if not os.path.exists("/proc/cpuinfo"):
        return None
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)

"""Detectron2 data glue: the DCT dataset mapper and the built-in demo datasets (registered on import)."""
from ..demo_data import prepare_demo, register_demo_datasets
from .mapper import DCTDatasetMapper, encode_dct

register_demo_datasets()

__all__ = ["DCTDatasetMapper", "encode_dct", "prepare_demo", "register_demo_datasets"]

"""Helpers shared by the Detectron2 tests."""


def small_cfg(config_file="configs/demo/mask_rcnn_dct_demo.yaml", *opts):
    """A config from the repo, shrunk for fast CPU tests (ResNet-18, small images)."""
    import os

    from detectron2.config import get_cfg

    from freqdet import add_freqdet_config

    cfg = get_cfg()
    add_freqdet_config(cfg)
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", config_file))
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.RESNETS.DEPTH",
            18,
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            64,
            "INPUT.MIN_SIZE_TRAIN",
            (128, 160),
            "INPUT.MAX_SIZE_TRAIN",
            240,
            "INPUT.MIN_SIZE_TEST",
            144,
            "INPUT.MAX_SIZE_TEST",
            240,
        ]
        + list(opts)
    )
    return cfg

"""Mask R-CNN on 24 DCT channels on the built-in demo data, on a CPU (LazyConfig).

The LazyConfig twin of mask_rcnn_dct_demo.yaml: Detectron2's common model, data, optimizer and
training configs, switched to DCT inputs by freqdet.detection.lazy.use_dct_input, with the demo's
settings (Base-demo.yaml: a ResNet-18-depth backbone with trainable BatchNorm, slimmer FPN and
heads, smaller anchors and images, 500 iterations of 4 images). tests/test_lazy.py holds the two
to the same modules, parameters and mapped inputs. Run it with Detectron2's own tool:

    python tools/lazyconfig_train_net.py --config-file configs/demo/mask_rcnn_dct_demo.py
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from freqdet.detection.lazy import clipped_sgd, use_dct_input

model = get_config("common/models/mask_rcnn_fpn.py").model
dataloader = get_config("common/data/coco.py").dataloader
optimizer = get_config("common/optim.py").SGD
train = get_config("common/train.py").train

use_dct_input(model, dataloader, optimizer, channels=24, stats_images=300)

_resnet = model.backbone.bottom_up
_resnet.stages.update(depth=18, norm="BN", stride_in_1x1=False)
_resnet.freeze_at = 0
_fpn_channels = 128
model.backbone.out_channels = _fpn_channels
model.proposal_generator.head.in_channels = _fpn_channels
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.update(pre_nms_topk=(1000, 500), post_nms_topk=(500, 300))
_heads = model.roi_heads
_heads.update(num_classes=6, batch_size_per_image=64)
_heads.box_head.update(input_shape=ShapeSpec(channels=_fpn_channels, height=7, width=7), fc_dims=[512, 512])
_heads.box_predictor.input_shape = ShapeSpec(channels=512)
_heads.mask_head.update(input_shape=ShapeSpec(channels=_fpn_channels, height=14, width=14), conv_dims=[128] * 5)

dataloader.train.dataset.names = "freqdet_demo_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), sample_style="choice", max_size=480),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "freqdet_demo_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=480)]
dataloader.test.num_workers = 1

# SGD as the yacs demo's: LR 0.02, gradients clipped to norm 10 per parameter.
optimizer._target_ = clipped_sgd
optimizer.update(lr=0.02, clip_type="norm", clip_value=10.0)

train.update(
    output_dir="output/demo/mask_rcnn_dct_demo_lazy",
    max_iter=500,
    device="cpu",
    eval_period=0,
    seed=0,
)
train.checkpointer.period = 250
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[400, 470], num_updates=500),
    warmup_length=100 / 500,
    warmup_factor=0.001,
)

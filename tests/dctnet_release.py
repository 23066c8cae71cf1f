"""The official DCTNet release's ImageNet models and validation pipeline, written again for the tests.

Written from the release's description and source (github.com/kaix90/DCTNet:
``classification/models/imagenet/resnet.py`` ``ResNetDCT_Upscaled_Static``,
``classification/models/imagenet/mobilenetv2.py`` ``MobileNetV2DCT_Subset_woinp``,
``classification/datasets/cvtransforms.py`` / ``cvfunctional.py`` and
``dataloader_imagenet_dct.py`` ``valloader_upscaled_static``), independently of freqdet:
plain torch modules with the release's parameter names, and OpenCV + libjpeg-turbo
(PyTurboJPEG) + jpeglib for the pipeline. Not part of the package.
"""

import copy

import cv2
import numpy as np
import torch
from torch import nn

# The release's main/__init__.py subset_channel_index: per component (Y, Cb, Cr), k = 8u + v.
SUBSETS = {
    24: ([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27], [0, 1, 8, 9], [0, 1, 8, 9]),
    32: (
        [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 24, 25, 26, 27, 32, 33, 34],
        [0, 1, 2, 8, 9],
        [0, 1, 2, 8, 9],
    ),
    64: (
        [
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            8,
            9,
            10,
            11,
            12,
            13,
            14,
            16,
            17,
            18,
            19,
            20,
            21,
            24,
            25,
            26,
            27,
            28,
            29,
            32,
            33,
            34,
            35,
            36,
            37,
            40,
            41,
            42,
            43,
            44,
            45,
            48,
            49,
            50,
            51,
            52,
            53,
        ],
        [0, 1, 2, 8, 9, 10, 16, 17, 24, 25],
        [0, 1, 2, 8, 9, 10, 16, 17, 24, 25],
    ),
}


def subset_index(channels: int):
    """The release's NormalizeDCT subset: Y indices, then 64 + Cb's, then 128 + Cr's."""
    y, cb, cr = SUBSETS[channels]
    return y + [64 + k for k in cb] + [128 + k for k in cr]


# --- ResNetDCT_Upscaled_Static --------------------------------------------------------------


class Bottleneck(nn.Module):
    """The release's (torchvision-style) bottleneck: stride in the 3x3 convolution."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def make_layer(inplanes, planes, blocks, stride):
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetDCTUpscaledStatic(nn.Module):
    """``model`` = layer1..layer4 + average pooling of a ResNet-50 whose layer2 has stride 1, and ``fc``.

    Its first block's input convolutions take C channels: for C < 64 the release builds a
    ``kernel_size=3`` convolution and then puts a sliced 1x1 weight in it (so it is a 1x1
    convolution without padding, stored as (64, C, 1, 1)); for 64 the block is unchanged.
    """

    def __init__(self, channels: int, num_classes: int = 1000):
        super().__init__()
        layers = [
            make_layer(64, 64, 3, 1),
            make_layer(256, 128, 4, 1),
            make_layer(512, 256, 6, 2),
            make_layer(1024, 512, 3, 2),
        ]
        self.model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 1)))
        self.fc = nn.Linear(2048, num_classes)
        first = self.model[0][0]
        if channels < 64:
            sliced = nn.Conv2d(channels, 64, kernel_size=3, bias=False)
            sliced.weight = nn.Parameter(first.conv1.weight.data[:, :channels].clone())
            first.conv1 = sliced
            first.downsample[0] = nn.Conv2d(channels, 256, 1, bias=False)
        elif channels == 192:
            first.conv1 = nn.Conv2d(channels, 64, 1, bias=False)
            first.downsample[0] = nn.Conv2d(channels, 256, 1, bias=False)

    def forward(self, x):
        return self.fc(self.model(x).reshape(x.shape[0], -1))

    def layer_outputs(self, x, standard_strides: bool):
        """layer1..layer4 outputs; with ``standard_strides`` as the release's detection backbone runs
        the same weights (layer2 at stride 2)."""
        model = self.model
        if standard_strides:
            model = copy.deepcopy(model)
            model[1][0].conv2.stride = model[1][0].downsample[0].stride = (2, 2)
        outputs = []
        for layer in model[:4]:
            x = layer(x)
            outputs.append(x)
        return outputs


# --- MobileNetV2DCT_Subset_woinp ------------------------------------------------------------


class InvertedResidual(nn.Module):
    """tonylins' block: ``conv`` = [dw, BN, ReLU6, pw, BN] for t=1, [pw, BN, ReLU6, dw, BN, ReLU6, pw, BN] else."""

    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.identity = stride == 1 and inp == oup
        layers = (
            []
            if expand_ratio == 1
            else [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        )
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.identity else self.conv(x)


# t, c, n, s of the release's MobileNetV2 with upscale=True (the standard network).
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2DCTSubsetWoinp(nn.Module):
    """The release's MobileNetV2 without its first stage (``features[1:]``), ``conv``, ``AvgPool2d(7)``,
    one Linear ``classifier``; the t=1 block sliced to C < 32 channels, or its depthwise
    convolution a grouped 192 -> 32 one for 192."""

    def __init__(self, channels: int, num_classes: int = 1000):
        super().__init__()
        blocks, inp = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(True))], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        self.features = nn.Sequential(*blocks[1:])
        first = self.features[0].conv
        if channels < 32:
            first[0] = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
            first[1] = nn.BatchNorm2d(channels)
            first[3] = nn.Conv2d(channels, 16, 1, bias=False)
        elif channels == 192:
            first[0] = nn.Conv2d(channels, 32, 3, 1, 1, groups=32, bias=False)
        self.conv = nn.Sequential(nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(True))
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.avgpool(self.conv(self.features(x)))
        return self.classifier(x.view(x.shape[0], -1))


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and non-trivial BatchNorm affine parameters and running statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.num_batches_tracked.fill_(1234)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / module.in_features**0.5)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def save_checkpoint(model: nn.Module, path, data_parallel: bool) -> None:
    """The release's ``model_best.pth.tar`` layout: ``state_dict`` (under ``module.`` when saved from DataParallel)."""
    prefix = "module." if data_parallel else ""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(
        {
            "epoch": 90,
            "arch": type(model).__name__,
            "state_dict": state,
            "best_prec1": 76.792,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.0001, "params": [0, 1]}]},
        },
        path,
    )


# --- valloader_upscaled_static --------------------------------------------------------------


def release_resize(img, size):
    """cvfunctional.resize with an int size: shorter side to ``size``, the other int(size * long / short)."""
    h, w, _ = img.shape
    if (w <= h and w == size) or (h <= w and h == size):
        return img
    if w < h:
        return cv2.resize(img, dsize=(size, int(size * h / w)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, dsize=(int(size * w / h), size), interpolation=cv2.INTER_LINEAR)


def release_center_crop(img, size):
    h, w, _ = img.shape
    i, j = int(round((h - size) * 0.5)), int(round((w - size) * 0.5))
    x1, y1, x2, y2 = round(i), round(j), round(i + size), round(j + size)
    return img[x1:x2, y1:y2, ...].copy()


def release_dct(img, encoder, tmp_path, name):
    """transform_dct: JPEG quality 100, 4:2:0 (jpeg_subsample=2), coefficients read back (jpeglib here,
    jpeg2dct in the release): Y, Cb, Cr as (rows, cols, 64), k = 8u + v."""
    import jpeglib
    from turbojpeg import TJSAMP_420

    assert TJSAMP_420 == 2
    path = tmp_path / name
    path.write_bytes(encoder.encode(np.ascontiguousarray(img, dtype="uint8"), quality=100, jpeg_subsample=2))
    coefficients = jpeglib.read_dct(str(path))
    assert (coefficients.qt == 1).all()
    return [plane.reshape(*plane.shape[:2], 64) for plane in (coefficients.Y, coefficients.Cb, coefficients.Cr)]


def release_val_input(path, resize, crop, channels, tmp_path):
    """The release's validation input of one image before NormalizeDCT: (C, crop/8, crop/8) float."""
    from turbojpeg import TurboJPEG

    encoder = TurboJPEG()
    img = release_center_crop(release_resize(cv2.imread(str(path)), resize), crop)
    h, w, _ = img.shape
    upscaled = cv2.resize(img, dsize=(2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    dct_y = release_dct(img, encoder, tmp_path, "y.jpg")[0]
    _, dct_cb, dct_cr = release_dct(upscaled, encoder, tmp_path, "cbcr.jpg")
    y, cb, cr = (torch.from_numpy(p.transpose(2, 0, 1).astype(np.float32)) for p in (dct_y, dct_cb, dct_cr))
    sub_y, sub_cb, sub_cr = SUBSETS[channels] if channels != 192 else (list(range(64)),) * 3
    return torch.cat((y[sub_y], cb[sub_cb], cr[sub_cr]), dim=0)

"""The classification training loop: SGD with cosine or step decay, label smoothing, AMP on GPU,
top-1/top-5, atomic checkpoints with resume, progress bars, and DistributedDataParallel when
launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs); evaluation of a checkpoint alone, and
training from a starting point (a classifier checkpoint, converted or trained, or
torchvision's RGB weights)."""

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..atomic_write import write_atomically
from ..dct import resolve_channels
from ..demo import prepare_demo_folder
from ..gate import ChannelGate
from ..safe_load import load_checkpoint
from ..stats import cached_stats, compute_stats
from .checkpoints import (
    NORMALIZATION_PREFIX,
    Network,
    classifier_from_checkpoint,
    classifier_record,
    is_classifier_checkpoint,
    load_initial_weights,
    recorded_network,
)
from .convert import torchvision_to_classifier
from .data import DCTCropTransform, image_folder, rgb_transform
from .models import DCT_CROP, RGB_CROP, build_classifier, check_channel_count
from .official import OfficialEvalTransform

logger = logging.getLogger("freqdet.classification")


def setup_distributed():
    """(rank, world size, device) from torchrun's environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    return rank, world, device


def accuracy(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)):
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return [hits[:, : min(k, logits.shape[1])].any(dim=1).float().sum().item() for k in ks]


@dataclass
class ClassificationConfig:
    """What a classification run does: ``tools/train_cls.py``'s options, one field each (its
    ``--help`` says what each means). The network fields left None (``arch``, ``layout``,
    ``input``, ``channels``) come from the starting checkpoint (``weights`` or ``init``) or
    from :data:`DEFAULTS`."""

    data: Optional[str] = None  # ImageFolder root with train/ and val/
    demo: bool = False  # the built-in demo ImageFolder instead of data
    arch: Optional[str] = None
    layout: Optional[str] = None
    input: Optional[str] = None  # "dct" or "rgb"
    channels: Optional[int] = None
    pattern: str = "square"
    indices: Optional[List[int]] = None  # explicit channel indices, overriding channels
    crop: Optional[int] = None  # default: 448 / 896 for DCT, 224 for RGB
    min_scale: float = 0.08
    gate: bool = False
    gate_lambda: float = 0.01
    gate_init_on: float = 2.0
    epochs: int = 90
    batch_size: int = 64  # per process
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # or "step"
    steps: List[int] = field(default_factory=lambda: [30, 60, 80])
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    clip_grad: float = 0.0
    amp: bool = True
    workers: int = 4
    stats_images: int = 1000
    max_steps: int = 0
    seed: int = 0
    output: str = "output/cls"
    resume: bool = False
    evaluate: bool = False
    weights: Optional[str] = None
    init: Optional[str] = None
    init_input: str = "reinit"
    preprocess: str = "freqdet"  # or "official"
    trust_checkpoint: bool = False


class StartingPoint(NamedTuple):
    """The weights --evaluate scores or --init starts from."""

    network: Network  # the network they are of
    state: Dict  # our keys
    checkpoint: Dict  # the file's record (what it says of its normalization, classes, ...)


# What the command line gives when it says nothing of the network.
DEFAULTS = {"arch": "resnet50", "input": "dct", "channels": 24, "layout": "torchvision"}


def default_network(config: ClassificationConfig) -> None:
    """Fill the network fields the config left out with :data:`DEFAULTS`."""
    for key, value in DEFAULTS.items():
        if getattr(config, key) is None and not (key == "channels" and config.indices):
            setattr(config, key, value)


def adopt_network(config: ClassificationConfig, recorded: Network, source: str) -> None:
    """Fill the config's network from a checkpoint's; ValueError if the config asks for another."""
    asked = {
        "arch": config.arch,
        "layout": config.layout,
        "input": config.input,
        "channels": resolve_channels(config.indices or config.channels, config.pattern)
        if (config.indices or config.channels)
        else None,
    }
    found = {
        "arch": recorded.arch,
        "layout": recorded.layout,
        "input": "dct" if recorded.channels else "rgb",
        "channels": recorded.channels,
    }
    differing = {k: (v, found[k]) for k, v in asked.items() if v is not None and v != found[k]}
    if differing:
        detail = ", ".join(f"--{k} {wanted!r} but it holds {held!r}" for k, (wanted, held) in differing.items())
        raise ValueError(
            f"{source} is another network than the command line asks for ({detail}): "
            "leave those options out to take the checkpoint's"
        )
    config.arch, config.layout, config.input = recorded.arch, recorded.layout, found["input"]
    config.indices, config.channels = (list(recorded.channels), None) if recorded.channels else (None, None)


class ClassificationTrainer:
    """Everything ``tools/train_cls.py`` runs, configured by a :class:`ClassificationConfig`."""

    def __init__(self, config: ClassificationConfig):
        self.config = config
        self.rank, self.world, self.device = setup_distributed()
        torch.manual_seed(config.seed)
        root = prepare_demo_folder() if config.demo else config.data
        self.initial, self.normalization = self.starting_point(), None
        self.dct = config.input == "dct"
        self.channels = resolve_channels(config.indices or config.channels, config.pattern) if self.dct else None
        check_channel_count(config.arch, config.layout, len(self.channels or ()))
        self.crop = config.crop or (DCT_CROP[config.arch] if self.dct else RGB_CROP)
        if config.preprocess == "official" and not self.dct:
            raise ValueError("--preprocess official is the release's DCT pipeline; it needs DCT inputs")
        scale = (config.min_scale, 1.0)
        evaluation = (
            OfficialEvalTransform(self.crop, self.channels)
            if config.preprocess == "official"
            else DCTCropTransform(self.crop, self.channels, False)
            if self.dct
            else rgb_transform(self.crop, False)
        )
        self.val_set = image_folder(os.path.join(root, "val"), evaluation, self.dct)
        if config.evaluate:
            self.train_set = None
            self.model = self.evaluated_model().to(self.device)
            return
        train = (
            DCTCropTransform(self.crop, self.channels, True, scale)
            if self.dct
            else rgb_transform(self.crop, True, scale)
        )
        self.train_set = image_folder(os.path.join(root, "train"), train, self.dct)
        initial_gate = self.initial is not None and self.initial.network.gate
        gate_norm = "BN" if not initial_gate or self.initial.network.gate_norm else ""
        gate = (
            ChannelGate(len(self.channels), norm=gate_norm, init_on=config.gate_init_on)
            if config.gate or initial_gate
            else None
        )
        model = build_classifier(config.arch, len(self.train_set.classes), self.channels, gate, config.layout)
        if self.initial is not None:
            self.load_initial(model)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and config.amp)
        self.start_epoch, self.best_top1 = 0, 0.0
        os.makedirs(config.output, exist_ok=True)

    def starting_point(self) -> Optional[StartingPoint]:
        """The weights of --weights (evaluation) or --init, the config's network adopted from
        them; None when training from scratch."""
        config = self.config
        path = config.weights if config.evaluate else config.init
        if not path:
            default_network(config)
            return None
        source = repr(path)
        checkpoint = load_checkpoint(path, trust=config.trust_checkpoint)
        if is_classifier_checkpoint(checkpoint) or config.evaluate:
            network = recorded_network(checkpoint, source)
            adopt_network(config, network, source)
            return StartingPoint(network, checkpoint["model"], checkpoint)
        default_network(config)  # torchvision's RGB weights: the network is the command line's
        if config.input != "dct":
            raise ValueError(f"--init {source} holds RGB weights; as an RGB model's start, load them with torchvision")
        channels = resolve_channels(config.indices or config.channels, config.pattern)
        state, report = torchvision_to_classifier(
            checkpoint, len(channels), config.seed, config.arch, config.layout, config.init_input
        )
        logger.info(f"--init {source}: torchvision's RGB {config.arch} -> {len(channels)} DCT channels\n{report}")
        network = Network(config.arch, config.layout, channels, 0, False, False)
        return StartingPoint(network, state, {})

    def evaluated_model(self) -> nn.Module:
        network, _, checkpoint = self.initial
        classes = checkpoint.get("classes")
        if network.num_classes != len(self.val_set.classes) or (classes and list(classes) != self.val_set.classes):
            raise ValueError(
                f"{self.config.weights!r} classifies {network.num_classes} classes"
                f"{' ' + str(classes[:5]) + '...' if classes else ''}, but {self.val_set.root} has "
                f"{len(self.val_set.classes)} ({self.val_set.classes[:5]}...): evaluate on the classes it was "
                "trained on"
            )
        return classifier_from_checkpoint(checkpoint, repr(self.config.weights))

    def load_initial(self, model: nn.Module) -> None:
        _, state, checkpoint = self.initial
        source = repr(self.config.init)
        report = load_initial_weights(model, state, source)
        if self.dct and NORMALIZATION_PREFIX + "mean" in state:
            recorded = checkpoint.get("normalization") or "its statistics"
            self.normalization = f"from --init {self.config.init}: {recorded}"
        logger.info(
            f"--init {source}: {report}" + (f"\nnormalization {self.normalization}" if self.normalization else "")
        )

    def loaders(self, epoch: int):
        sampler = DistributedSampler(self.train_set, shuffle=True, seed=self.config.seed) if self.world > 1 else None
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        train = DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=generator,
            persistent_workers=False,
        )
        val_sampler = DistributedSampler(self.val_set, shuffle=False) if self.world > 1 else None
        val = DataLoader(
            self.val_set, batch_size=self.config.batch_size, sampler=val_sampler, num_workers=self.config.workers
        )
        return train, val

    def dct_statistics(self):
        """Per-channel mean/std over training images (centre crops), cached in the output folder
        and recomputed when the cached ones are for other channels or another crop."""
        path = os.path.join(self.config.output, "dct_stats.json")

        def compute():
            transform = DCTCropTransform(self.crop, self.channels, train=False)
            images = [p for p, _ in self.train_set.samples]
            return compute_stats(images, transform, self.channels, self.config.stats_images)

        barrier = dist.barrier if self.world > 1 else lambda: None
        stats = cached_stats(path, self.channels, compute, self.rank == 0, barrier, crop=self.crop)
        self.normalization = (
            f"computed over {stats.info.get('num_images')} training images (centre crops of {self.crop} pixels, {path})"
        )
        return stats.pick(self.channels, path)

    def lr_at(self, epoch: float) -> float:
        config = self.config
        if epoch < config.warmup_epochs:
            return config.lr * (epoch + 1e-3) / config.warmup_epochs
        if config.schedule == "cosine":
            return 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.epochs))
        return config.lr * (0.1 ** sum(epoch >= step for step in config.steps))

    def resume(self):
        path = os.path.join(self.config.output, "checkpoint.pth")
        if not (self.config.resume and os.path.exists(path)):
            return
        state = load_checkpoint(path, trust=self.config.trust_checkpoint, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.normalization = state.get("normalization", self.normalization)
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:  # AMP's loss scale, so a resumed run does not start it over
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best_top1 = state["epoch"] + 1, state["best_top1"]
        logger.info(f"resumed from {path} (epoch {state['epoch']} done)")

    def train(self) -> Dict:
        config = self.config
        resuming = config.resume and os.path.exists(os.path.join(config.output, "checkpoint.pth"))
        if self.dct and not resuming and self.normalization is None:
            self.model.input.set_stats(*self.dct_statistics())
        self.resume()
        model = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.world > 1
            else self.model
        )
        gate = getattr(getattr(self.model, "input", None), "gate", None)
        steps = 0
        results = {}
        for epoch in range(self.start_epoch, config.epochs):
            train_loader, val_loader = self.loaders(epoch)
            model.train()
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=self.rank != 0, mininterval=2.0)
            for i, (inputs, targets) in enumerate(bar):
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(epoch + i / len(train_loader))
                inputs, targets = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, enabled=self.scaler.is_enabled()):
                    loss = self.criterion(model(inputs), targets)
                    on = loss.new_zeros(())
                    if gate is not None:
                        loss, on = loss + gate.loss(config.gate_lambda), gate.channels_on()
                shown_loss, shown_on = torch.stack([loss.detach().float(), on.detach().float()]).tolist()  # one sync
                if not math.isfinite(shown_loss):
                    raise FloatingPointError(
                        f"the loss became {shown_loss} at epoch {epoch + 1}, step {i + 1}: training diverged; "
                        f"lower --lr (now {config.lr}) or add --warmup-epochs"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if config.clip_grad > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                steps += 1
                postfix = {"loss": f"{shown_loss:.3f}"}
                if gate is not None:
                    postfix["channels_on"] = f"{shown_on:.1f}"
                bar.set_postfix(postfix)
                if config.max_steps and steps >= config.max_steps:
                    break
            results = self.evaluate(model, val_loader)
            results["epoch"] = epoch + 1
            self.best_top1 = max(self.best_top1, results["top1"])
            if self.rank == 0:
                logger.info(f"epoch {epoch + 1}: val top-1 {results['top1']:.2f}%, top-5 {results['top5']:.2f}%")
                self.checkpoint(epoch, results)
            if config.max_steps and steps >= config.max_steps:
                break
        results["ranks_agree"] = self.ranks_agree()
        return results

    @torch.no_grad()
    def evaluate(self, model, loader) -> Dict:
        model.eval()
        totals = torch.zeros(3, device=self.device)
        bar = tqdm(loader, desc="evaluating", disable=self.rank != 0 or not self.config.evaluate, mininterval=2.0)
        for inputs, targets in bar:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            top1, top5 = accuracy(model(inputs), targets)
            totals += torch.tensor([top1, top5, len(targets)], device=self.device)
        if self.world > 1:
            dist.all_reduce(totals)
        return {
            "top1": 100 * totals[0].item() / totals[2].item(),
            "top5": 100 * totals[1].item() / totals[2].item(),
            "images": int(totals[2].item()),
        }

    def evaluate_weights(self) -> Dict:
        """Top-1 / top-5 of --weights on the validation images (no training)."""
        sampler = DistributedSampler(self.val_set, shuffle=False) if self.world > 1 else None
        loader = DataLoader(
            self.val_set, batch_size=self.config.batch_size, sampler=sampler, num_workers=self.config.workers
        )
        return self.evaluate(self.model, loader)

    def record(self, **extra) -> Dict:
        """A classifier checkpoint of the model now (:func:`~.checkpoints.classifier_record`)."""
        normalization = self.normalization if self.dct else "ImageNet's RGB mean/std, in the input transform"
        return classifier_record(
            self.model.state_dict(),
            self.config.arch,
            self.config.layout,
            self.channels,
            len(self.train_set.classes),
            normalization,
            classes=self.train_set.classes,
            **extra,
        )

    def checkpoint(self, epoch: int, results: Dict) -> None:
        state = self.record(
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            epoch=epoch,
            best_top1=self.best_top1,
            results=results,
            config=asdict(self.config),
        )
        write_atomically(os.path.join(self.config.output, "checkpoint.pth"), lambda f: torch.save(state, f))
        if results["top1"] >= self.best_top1:
            best = self.record(results=results)
            write_atomically(os.path.join(self.config.output, "model_best.pth"), lambda f: torch.save(best, f))

    def ranks_agree(self) -> bool:
        """Whether every rank holds the same weights (all-gathered checksums); True for one process."""
        if self.world == 1:
            return True
        checksum = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().to(self.device)
        gathered = [torch.zeros_like(checksum) for _ in range(self.world)]
        dist.all_gather(gathered, checksum)
        agree = all(torch.equal(g, gathered[0]) for g in gathered)
        logger.info(
            f"rank {self.rank}: weights {'agree' if agree else 'DIFFER'} across {self.world} ranks "
            f"(checksum {checksum.item():.6f})"
        )
        return agree

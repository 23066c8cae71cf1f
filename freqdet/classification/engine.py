"""The classification training loop: SGD with cosine or step decay, label smoothing, AMP on GPU,
top-1/top-5, atomic checkpoints with resume, progress bars, and DistributedDataParallel when
launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs); evaluation of a checkpoint alone, and
training from a starting point (a classifier checkpoint, converted or trained, or
torchvision's RGB weights)."""

import logging
import math
import os
from typing import Dict, NamedTuple, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..dct import resolve_channels
from ..demo import prepare_demo_folder
from ..files import load_checkpoint, write_atomically
from ..gate import ChannelGate
from ..stats import compute_stats, load_matching, save_stats
from .checkpoints import (
    Description,
    classifier_from_checkpoint,
    classifier_record,
    describe,
    is_classifier_checkpoint,
    load_initial_weights,
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


class StartingPoint(NamedTuple):
    """The weights --evaluate scores or --init starts from."""

    description: Description  # the network they are of
    state: Dict  # our keys
    checkpoint: Dict  # the file's record (what it says of its normalization, classes, ...)


# What the command line gives when it says nothing of the network.
DEFAULTS = {"arch": "resnet50", "input": "dct", "channels": 24, "layout": "torchvision"}


def default_network(args) -> None:
    """Fill the network options the command line left out with :data:`DEFAULTS`."""
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None and not (key == "channels" and args.indices):
            setattr(args, key, value)


def settle(args, recorded: Description, source: str) -> None:
    """Fill ``args``' network from a checkpoint's; ValueError if the command line asked for another."""
    asked = {
        "arch": args.arch,
        "layout": args.layout,
        "input": args.input,
        "channels": resolve_channels(args.indices or args.channels, args.pattern)
        if (args.indices or args.channels)
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
    args.arch, args.layout, args.input = recorded.arch, recorded.layout, found["input"]
    args.indices, args.channels = (list(recorded.channels), None) if recorded.channels else (None, None)


class ClassificationTrainer:
    """Everything ``tools/train_cls.py`` runs, configured by its parsed arguments."""

    def __init__(self, args):
        self.args = args
        self.rank, self.world, self.device = setup_distributed()
        torch.manual_seed(args.seed)
        root = prepare_demo_folder() if args.demo else args.data
        self.initial, self.normalization = self.starting_point(), None
        self.dct = args.input == "dct"
        self.channels = resolve_channels(args.indices or args.channels, args.pattern) if self.dct else None
        check_channel_count(args.arch, args.layout, len(self.channels or ()))
        self.crop = args.crop or (DCT_CROP[args.arch] if self.dct else RGB_CROP)
        if args.preprocess == "official" and not self.dct:
            raise ValueError("--preprocess official is the release's DCT pipeline; it needs DCT inputs")
        scale = (args.min_scale, 1.0)
        evaluation = (
            OfficialEvalTransform(self.crop, self.channels)
            if args.preprocess == "official"
            else DCTCropTransform(self.crop, self.channels, False)
            if self.dct
            else rgb_transform(self.crop, False)
        )
        self.val_set = image_folder(os.path.join(root, "val"), evaluation, self.dct)
        if args.evaluate:
            self.train_set = None
            self.model = self.evaluated_model().to(self.device)
            return
        train = (
            DCTCropTransform(self.crop, self.channels, True, scale)
            if self.dct
            else rgb_transform(self.crop, True, scale)
        )
        self.train_set = image_folder(os.path.join(root, "train"), train, self.dct)
        initial_gate = self.initial is not None and self.initial.description.gate
        gate_norm = "BN" if not initial_gate or self.initial.description.gate_norm else ""
        gate = (
            ChannelGate(len(self.channels), norm=gate_norm, init_on=args.gate_init_on)
            if args.gate or initial_gate
            else None
        )
        model = build_classifier(args.arch, len(self.train_set.classes), self.channels, gate, args.layout)
        if self.initial is not None:
            self.load_initial(model)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            nesterov=args.momentum > 0,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and args.amp)
        self.start_epoch, self.best_top1 = 0, 0.0
        os.makedirs(args.output, exist_ok=True)

    def starting_point(self) -> Optional[StartingPoint]:
        """The weights of --weights (evaluation) or --init, settling the network's options from
        them; None when training from scratch."""
        args = self.args
        path = args.weights if args.evaluate else args.init
        if not path:
            default_network(args)
            return None
        source = repr(path)
        checkpoint = load_checkpoint(path, trust=args.trust_checkpoint)
        if is_classifier_checkpoint(checkpoint) or args.evaluate:
            description = describe(checkpoint, source)
            settle(args, description, source)
            return StartingPoint(description, checkpoint["model"], checkpoint)
        default_network(args)  # torchvision's RGB weights: the network is the command line's
        if args.input != "dct":
            raise ValueError(f"--init {source} holds RGB weights; as an RGB model's start, load them with torchvision")
        channels = resolve_channels(args.indices or args.channels, args.pattern)
        state, report = torchvision_to_classifier(
            checkpoint, len(channels), args.seed, args.arch, args.layout, args.init_input
        )
        logger.info(f"--init {source}: torchvision's RGB {args.arch} -> {len(channels)} DCT channels\n{report}")
        description = Description(args.arch, args.layout, channels, 0, False, False)
        return StartingPoint(description, state, {})

    def evaluated_model(self) -> nn.Module:
        description, _, checkpoint = self.initial
        classes = checkpoint.get("classes")
        if description.num_classes != len(self.val_set.classes) or (classes and list(classes) != self.val_set.classes):
            raise ValueError(
                f"{self.args.weights!r} classifies {description.num_classes} classes"
                f"{' ' + str(classes[:5]) + '...' if classes else ''}, but {self.val_set.root} has "
                f"{len(self.val_set.classes)} ({self.val_set.classes[:5]}...): evaluate on the classes it was trained on"
            )
        return classifier_from_checkpoint(checkpoint, repr(self.args.weights))

    def load_initial(self, model: nn.Module) -> None:
        _, state, checkpoint = self.initial
        source = repr(self.args.init)
        report = load_initial_weights(model, state, source)
        if self.dct and "input.normalization.mean" in state:
            self.normalization = f"from --init {self.args.init}: {checkpoint.get('normalization') or 'its statistics'}"
        logger.info(
            f"--init {source}: {report}" + (f"\nnormalization {self.normalization}" if self.normalization else "")
        )

    def loaders(self, epoch: int):
        sampler = DistributedSampler(self.train_set, shuffle=True, seed=self.args.seed) if self.world > 1 else None
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.args.seed + epoch)
        train = DataLoader(
            self.train_set,
            batch_size=self.args.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=self.args.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=generator,
            persistent_workers=False,
        )
        val_sampler = DistributedSampler(self.val_set, shuffle=False) if self.world > 1 else None
        val = DataLoader(
            self.val_set, batch_size=self.args.batch_size, sampler=val_sampler, num_workers=self.args.workers
        )
        return train, val

    def dct_statistics(self):
        """Per-channel mean/std over training images (centre crops), cached in the output folder
        and recomputed when the cached ones are for other channels or another crop."""
        path = os.path.join(self.args.output, "dct_stats.json")
        if self.rank == 0 and load_matching(path, self.channels, crop=self.crop) is None:
            transform = DCTCropTransform(self.crop, self.channels, train=False)
            stats = compute_stats(
                [p for p, _ in self.train_set.samples], transform, self.channels, self.args.stats_images
            )
            save_stats(stats._replace(info={**stats.info, "crop": self.crop}), path)
        if self.world > 1:
            dist.barrier()
        stats = load_matching(path, self.channels, crop=self.crop)
        self.normalization = (
            f"computed over {stats.info.get('num_images')} training images (centre crops of {self.crop} pixels, {path})"
        )
        return stats.pick(self.channels, path)

    def lr_at(self, epoch: float) -> float:
        args = self.args
        if epoch < args.warmup_epochs:
            return args.lr * (epoch + 1e-3) / args.warmup_epochs
        if args.schedule == "cosine":
            return 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
        return args.lr * (0.1 ** sum(epoch >= step for step in args.steps))

    def resume(self):
        path = os.path.join(self.args.output, "checkpoint.pth")
        if not (self.args.resume and os.path.exists(path)):
            return
        state = load_checkpoint(path, trust=self.args.trust_checkpoint, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.normalization = state.get("normalization", self.normalization)
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:  # AMP's loss scale, so a resumed run does not start it over
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best_top1 = state["epoch"] + 1, state["best_top1"]
        logger.info(f"resumed from {path} (epoch {state['epoch']} done)")

    def train(self) -> Dict:
        args = self.args
        resuming = args.resume and os.path.exists(os.path.join(args.output, "checkpoint.pth"))
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
        for epoch in range(self.start_epoch, args.epochs):
            train_loader, val_loader = self.loaders(epoch)
            model.train()
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=self.rank != 0, mininterval=2.0)
            for i, (inputs, targets) in enumerate(bar):
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(epoch + i / len(train_loader))
                inputs, targets = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, enabled=self.scaler.is_enabled()):
                    loss = self.criterion(model(inputs), targets)
                    on = gate.channels_on() if gate is not None else loss.new_zeros(())
                    loss = loss + args.gate_lambda * on
                shown_loss, shown_on = torch.stack([loss.detach().float(), on.detach().float()]).tolist()  # one sync
                if not math.isfinite(shown_loss):
                    raise FloatingPointError(
                        f"the loss became {shown_loss} at epoch {epoch + 1}, step {i + 1}: training diverged; "
                        f"lower --lr (now {args.lr}) or add --warmup-epochs"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if args.clip_grad > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), args.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                steps += 1
                postfix = {"loss": f"{shown_loss:.3f}"}
                if gate is not None:
                    postfix["channels_on"] = f"{shown_on:.1f}"
                bar.set_postfix(postfix)
                if args.max_steps and steps >= args.max_steps:
                    break
            results = self.evaluate(model, val_loader)
            results["epoch"] = epoch + 1
            self.best_top1 = max(self.best_top1, results["top1"])
            if self.rank == 0:
                logger.info(f"epoch {epoch + 1}: val top-1 {results['top1']:.2f}%, top-5 {results['top5']:.2f}%")
                self.checkpoint(epoch, results)
            if args.max_steps and steps >= args.max_steps:
                break
        results["ranks_agree"] = self.ranks_agree()
        return results

    @torch.no_grad()
    def evaluate(self, model, loader) -> Dict:
        model.eval()
        totals = torch.zeros(3, device=self.device)
        bar = tqdm(loader, desc="evaluating", disable=self.rank != 0 or not self.args.evaluate, mininterval=2.0)
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
            self.val_set, batch_size=self.args.batch_size, sampler=sampler, num_workers=self.args.workers
        )
        return self.evaluate(self.model, loader)

    def record(self, **extra) -> Dict:
        """A classifier checkpoint of the model now (:func:`~.checkpoints.classifier_record`)."""
        normalization = self.normalization if self.dct else "ImageNet's RGB mean/std, in the input transform"
        return classifier_record(
            self.model.state_dict(),
            self.args.arch,
            self.args.layout,
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
            args=vars(self.args),
        )
        write_atomically(os.path.join(self.args.output, "checkpoint.pth"), lambda f: torch.save(state, f))
        if results["top1"] >= self.best_top1:
            best = self.record(results=results)
            write_atomically(os.path.join(self.args.output, "model_best.pth"), lambda f: torch.save(best, f))

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

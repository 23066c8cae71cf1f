"""The classification training loop: SGD with cosine or step decay, label smoothing, AMP on GPU,
top-1/top-5, atomic checkpoints with resume, progress bars, and DistributedDataParallel when
launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
import logging
import math
import os
from typing import Dict

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..dct import resolve_channels
from ..demo import prepare_demo_folder
from ..files import write_atomically
from ..gate import ChannelGate
from ..stats import compute_stats, load_matching, save_stats
from .data import DCTCropTransform, image_folder, rgb_transform
from .models import DCT_CROP, RGB_CROP, build_classifier

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


class ClassificationTrainer:
    """Everything ``tools/train_cls.py`` runs, configured by its parsed arguments."""

    def __init__(self, args):
        self.args = args
        self.rank, self.world, self.device = setup_distributed()
        torch.manual_seed(args.seed)
        root = prepare_demo_folder() if args.demo else args.data
        self.dct = args.input == "dct"
        self.channels = resolve_channels(args.indices or args.channels, args.pattern) if self.dct else None
        self.crop = args.crop or (DCT_CROP[args.arch] if self.dct else RGB_CROP)
        scale = (args.min_scale, 1.0)
        transforms = [DCTCropTransform(self.crop, self.channels, train, scale) if self.dct
                      else rgb_transform(self.crop, train, scale) for train in (True, False)]
        self.train_set = image_folder(os.path.join(root, "train"), transforms[0], self.dct)
        self.val_set = image_folder(os.path.join(root, "val"), transforms[1], self.dct)
        gate = ChannelGate(len(self.channels), init_on=args.gate_init_on) if args.gate else None
        model = build_classifier(args.arch, len(self.train_set.classes), self.channels, gate)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=args.lr, momentum=args.momentum,
                                         weight_decay=args.weight_decay, nesterov=args.momentum > 0)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and args.amp)
        self.start_epoch, self.best_top1 = 0, 0.0
        os.makedirs(args.output, exist_ok=True)

    def loaders(self, epoch: int):
        sampler = DistributedSampler(self.train_set, shuffle=True, seed=self.args.seed) if self.world > 1 else None
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.args.seed + epoch)
        train = DataLoader(self.train_set, batch_size=self.args.batch_size, shuffle=sampler is None, sampler=sampler,
                           num_workers=self.args.workers, pin_memory=self.device.type == "cuda", drop_last=True,
                           generator=generator, persistent_workers=False)
        val_sampler = DistributedSampler(self.val_set, shuffle=False) if self.world > 1 else None
        val = DataLoader(self.val_set, batch_size=self.args.batch_size, sampler=val_sampler, num_workers=self.args.workers)
        return train, val

    def dct_statistics(self):
        """Per-channel mean/std over training images (centre crops), cached in the output folder
        and recomputed when the cached ones are for other channels or another crop."""
        path = os.path.join(self.args.output, "dct_stats.json")
        if self.rank == 0 and load_matching(path, self.channels, crop=self.crop) is None:
            transform = DCTCropTransform(self.crop, self.channels, train=False)
            stats = compute_stats([p for p, _ in self.train_set.samples], transform, self.channels, self.args.stats_images)
            save_stats(stats._replace(info={**stats.info, "crop": self.crop}), path)
        if self.world > 1:
            dist.barrier()
        return load_matching(path, self.channels, crop=self.crop).pick(self.channels, path)

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
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:  # AMP's loss scale, so a resumed run does not start it over
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best_top1 = state["epoch"] + 1, state["best_top1"]
        logger.info(f"resumed from {path} (epoch {state['epoch']} done)")

    def train(self) -> Dict:
        args = self.args
        if self.dct and not (args.resume and os.path.exists(os.path.join(args.output, "checkpoint.pth"))):
            self.model.input.set_stats(*self.dct_statistics())
        self.resume()
        model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.world > 1 else self.model
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
        for inputs, targets in loader:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            top1, top5 = accuracy(model(inputs), targets)
            totals += torch.tensor([top1, top5, len(targets)], device=self.device)
        if self.world > 1:
            dist.all_reduce(totals)
        return {"top1": 100 * totals[0].item() / totals[2].item(), "top5": 100 * totals[1].item() / totals[2].item()}

    def checkpoint(self, epoch: int, results: Dict) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "epoch": epoch,
                 "best_top1": self.best_top1, "results": results, "args": vars(self.args),
                 "classes": self.train_set.classes, "channels": list(self.channels) if self.dct else None}
        write_atomically(os.path.join(self.args.output, "checkpoint.pth"), lambda f: torch.save(state, f))
        if results["top1"] >= self.best_top1:
            best = {"model": self.model.state_dict(), "results": results, "arch": self.args.arch, "channels": state["channels"]}
            write_atomically(os.path.join(self.args.output, "model_best.pth"), lambda f: torch.save(best, f))

    def ranks_agree(self) -> bool:
        """Whether every rank holds the same weights (all-gathered checksums); True for one process."""
        if self.world == 1:
            return True
        checksum = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().to(self.device)
        gathered = [torch.zeros_like(checksum) for _ in range(self.world)]
        dist.all_gather(gathered, checksum)
        agree = all(torch.equal(g, gathered[0]) for g in gathered)
        logger.info(f"rank {self.rank}: weights {'agree' if agree else 'DIFFER'} across {self.world} ranks "
                    f"(checksum {checksum.item():.6f})")
        return agree

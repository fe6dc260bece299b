"""Shared-encoder multi-task networks, for single-task, label-injection and multi-task runs.

One `MultiTaskNet` serves every run kind: a shared encoder (optionally followed by a shared 1x1
"neck", the reference networks' `final_conv`), and one head per task: a dense decoder, or for an
image-level task a pooled linear head (global average pool, linear). A single-task model is
the one-task case; a label-injection model adds the partner's label as extra input channels.

Paired seeds: the encoder, each decoder and the injection stem draw their initial weights from
generators seeded by (seed, part name), so STL(t), LI(t <- p) and MTL{t, p} of one seed start from
the same encoder and the same decoder for t.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict
from typing import NamedTuple

import torch
from torch import nn

from raytaskaff.atomic import atomic_path
from raytaskaff.settings import ModelConfig, preset  # noqa: F401  (re-exported: the presets live with the settings)
from raytaskaff.tasks import task


class HeadSpec(NamedTuple):
    """What a network needs of a task it predicts: its name, outputs and whether they are dense."""

    name: str
    out_channels: int
    dense: bool = True


class InjectSpec(NamedTuple):
    """What a network needs of a task whose label it receives: its name and input channels."""

    name: str
    inject_channels: int


def part_seed(seed: int, part: str) -> int:
    """A 63-bit seed for one part of a model, stable across processes and Python versions."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{part}".encode()).digest()[:8], "little") >> 1


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvEncoder(nn.Module):
    """(B, 3, H, W) -> (B, widths[-1], H / 2^stages, W / 2^stages)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, config.widths[0], 3, 1, 1, bias=False)
        self.stem_rest = nn.Sequential(nn.BatchNorm2d(config.widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], config.widths[0]
        for width in config.widths:
            stages.append(_block(cin, width, 2))
            stages.extend(_block(width, width) for _ in range(config.blocks - 1))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = config.widths[-1]
        self.stride = 2 ** len(config.widths)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(x) if extra is None else self.stem(x) + extra
        return self.stages(self.stem_rest(h))


class ResNetEncoder(nn.Module):
    """torchvision's ResNet-18 trunk (randomly initialised; nothing is downloaded), stride 32."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.stem = net.conv1
        self.stem_rest = nn.Sequential(net.bn1, net.relu, net.maxpool)
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = 512
        self.stride = 32

    forward = ConvEncoder.forward


class Decoder(nn.Module):
    """(B, C_in, h, w) -> (B, out_channels, h * 2^ups, w * 2^ups): [ConvT 2x2/2, BN, ReLU, conv 3x3, BN, ReLU]
    per up-sampling, then a 1x1 conv (the reference decoders' shape)."""

    def __init__(self, cin: int, out_channels: int, width: int, ups: int) -> None:
        super().__init__()
        layers = []
        for i in range(ups):
            cout = max(8, width // 2**i)
            layers += [nn.ConvTranspose2d(cin, cout, 2, 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       *_block(cout, cout)]
            cin = cout
        layers.append(nn.Conv2d(cin, out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PooledHead(nn.Module):
    """(B, C_in, h, w) -> (B, out_channels): global average pool, then one linear layer (TAG's
    CelebA heads)."""

    def __init__(self, cin: int, out_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, out_channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ResidualEncoder(nn.Module):
    """A network of the size of TAG's CelebA one (Fifty et al. 2021: one conv layer and one
    residual block, a head per attribute): a 3x3 conv (BN, ReLU, 2x2 max-pool) and one residual
    block of two 3x3 convs, widths[0] channels throughout, stride 2."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.widths[0]
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.stem_rest = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.block = nn.Sequential(*_block(width, width), nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.out_channels = width
        self.stride = 2

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem_rest(self.stem(x) if extra is None else self.stem(x) + extra)
        return torch.relu(h + self.block(h))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    return _ScaleGrad.apply(x, scale) if scale != 1.0 else x


class MultiTaskNet(nn.Module):
    """A shared encoder (+ neck) with one decoder per task.

    tasks: the tasks it predicts (anything with `name`, `out_channels` and `dense`: a `tasks.Task`
    or a `HeadSpec`); inject: tasks whose labels it receives as extra input channels (with
    `inject_channels`; label injection); grad_scale: scale the gradient entering the shared representation by
    1/sqrt(number of tasks), as the reference setup's TrevorRepFunction does (after the neck).
    """

    def __init__(self, tasks: list, config: ModelConfig, *, inject: list = (), seed: int = 0,
                 grad_scale: bool = False) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a network needs at least one task")
        self.task_names = [t.name for t in tasks]
        self.inject_names = [t.name for t in inject]
        self.head_specs = [HeadSpec(t.name, t.out_channels, t.dense) for t in tasks]
        self.inject_specs = [InjectSpec(t.name, t.inject_channels) for t in inject]
        self.config = config
        encoder_type = {"resnet18": ResNetEncoder, "residual": ResidualEncoder}.get(config.backbone, ConvEncoder)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(part_seed(seed, "encoder"))
            self.encoder = encoder_type(config)
            width = self.encoder.out_channels
            self.neck = nn.Identity()
            if config.neck:
                self.neck = nn.Sequential(nn.Conv2d(width, config.neck, 1, bias=False), nn.BatchNorm2d(config.neck), nn.ReLU(inplace=True))
                width = config.neck
            self.inject_stem = None
            extra = sum(t.inject_channels for t in inject)
            if extra:
                torch.manual_seed(part_seed(seed, "inject/" + "+".join(self.inject_names)))
                self.inject_stem = nn.Conv2d(extra, self.encoder.stem.out_channels, self.encoder.stem.kernel_size,
                                             self.encoder.stem.stride, self.encoder.stem.padding, bias=False)
            ups = int(math.log2(self.encoder.stride))
            decoders = {}
            for t in tasks:
                torch.manual_seed(part_seed(seed, "decoder/" + t.name))
                decoders[t.name] = Decoder(width, t.out_channels, config.decoder_width, ups) if t.dense else PooledHead(width, t.out_channels)
            self.decoders = nn.ModuleDict(decoders)
        self.grad_scale = 1.0 / math.sqrt(len(tasks)) if grad_scale and len(tasks) > 1 else 1.0

    def shared_parameters(self) -> list[nn.Parameter]:
        """Encoder, injection stem and neck: everything every task's gradient flows through."""
        parts = [self.encoder, self.neck] + ([self.inject_stem] if self.inject_stem is not None else [])
        return [p for part in parts for p in part.parameters()]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoder alone (the neck excluded), as the reference lookahead steps."""
        return list(self.encoder.parameters())

    def represent(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) images (+ (B, C, H, W) injected labels) -> the shared representation."""
        if (extra is None) != (self.inject_stem is None):
            raise ValueError("injected labels must be given exactly when the network was built with inject")
        z = self.neck(self.encoder(x, None if extra is None else self.inject_stem(extra)))
        return scale_grad(z, self.grad_scale)

    def heads(self, z: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every decoder on the representation (or on its own copy of it, {task: z})."""
        return {name: dec(z[name] if isinstance(z, dict) else z) for name, dec in self.decoders.items()}

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.heads(self.represent(x, extra))


def save_model(model: MultiTaskNet, path, seed: int = 0) -> None:
    """Write a network's weights and everything needed to rebuild it (tensors and plain data only,
    so `load_model` can read it with torch.load(weights_only=True)); atomic."""
    state = {
        "tasks": model.task_names, "inject": model.inject_names, "seed": seed,
        "heads": [[h.name, h.out_channels, h.dense] for h in model.head_specs],
        "inject_channels": [[i.name, i.inject_channels] for i in model.inject_specs],
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()},
        "grad_scale": model.grad_scale != 1.0, "state": model.state_dict(),
    }
    save_atomic(state, path)


def save_atomic(state: dict, path) -> None:
    """torch.save to a temporary name, then move into place: a crash or a full disk leaves the old
    file or none, never a partial one."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(path, map_location="cpu") -> MultiTaskNet:
    """The network `save_model` wrote, in eval mode, its parameters and buffers on `map_location`
    (a device or its name): the network is moved there before the weights are copied in, since
    load_state_dict copies into the network's own tensors wherever they live."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()})
    if "heads" in saved:  # any task: its heads as saved
        tasks = [HeadSpec(*h) for h in saved["heads"]]
        inject = [InjectSpec(*i) for i in saved["inject_channels"]]
    else:  # written before heads were saved: Taskonomy presets
        tasks, inject = [task(n) for n in saved["tasks"]], [task(n) for n in saved["inject"]]
    model = MultiTaskNet(tasks, config, inject=inject, seed=saved["seed"], grad_scale=saved["grad_scale"]).to(map_location)
    model.load_state_dict(saved["state"])
    return model.eval()

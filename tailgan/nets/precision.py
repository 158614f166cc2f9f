"""How networks run: exact fp32, or the fast path (bf16 autocast + channels-last memory format).

``precision=auto`` (the default) picks the fast path where the hardware has it: on a CPU with native bf16
(AVX512-BF16 / AMX, detected through oneDNN) bf16 autocast with channels-last tensors and modules; on a GPU
bf16 autocast where it is supported, else fp16 autocast with a gradient scaler. Elsewhere it falls back to
fp32 and says so. ``precision=fp32`` is exact fp32 (bit-exact resume, reproducible figures);
``precision=bf16`` / ``fp16`` ask for one explicitly.

What stays in fp32 in every mode, and why: loss reductions and the contrastive losses' normalisation
(recipes cast logits and embeddings with ``.float()`` before them: a bf16 mean or a bf16 norm of a
512-d embedding keeps 2-3 significant digits, enough to bias a softmax over a batch), and the gradient
penalty's norm and square (``(||g|| - 1)^2`` is a small difference of numbers near 1, where bf16's 8-bit
mantissa is coarsest). The penalty's critic pass and its double backward run under autocast
(``loss.gp_autocast=true``, the default): they are about 60 % of an fp32 ecogan-dcgan step on the CPU, the
penalty moved 0.9 % on a trained critic, and 2,000-step runs of ecogan-dcgan and bagan-gp with it scored
within or beyond the spread of three fp32 seeds on FID, KID and label accuracy, overall and on the rarest three
classes (``benchmarks/results/precision_quality.md``). ``loss.gp_autocast=false`` keeps the whole penalty in fp32
(runs written before the switch resume so).
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tailgan.errors import TailganError

PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 arithmetic is native: a CUDA GPU that supports it, a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


@dataclass(frozen=True)
class Precision:
    """The resolved policy: an autocast dtype (None: fp32), channels-last or not, a grad scaler or not."""

    name: Literal["fp32", "bf16", "fp16"] = "fp32"
    device_type: str = "cpu"
    channels_last: bool = False

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self):
        """The autocast context of the forward passes (nothing in fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def module(self, net: nn.Module) -> nn.Module:
        """``net`` in the policy's memory format (in place)."""
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images in the policy's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def resolve_precision(name: PrecisionName, device: torch.device) -> tuple[Precision, str | None]:
    """The policy for ``name`` on ``device``, and a note to log when it is not what was asked for."""
    device = torch.device(device)
    if name == "fp32":
        return Precision("fp32", device.type), None
    if name == "fp16":
        if device.type != "cuda":
            return Precision("fp32", device.type), "precision=fp16 needs a CUDA GPU; training in fp32"
        return Precision("fp16", "cuda", channels_last=True), None
    if bf16_supported(device):
        return Precision("bf16", device.type, channels_last=True), None
    if name == "auto" and device.type == "cuda":
        return Precision("fp16", "cuda", channels_last=True), None
    return Precision("fp32", device.type), f"this {device.type} has no native bf16; training in fp32 (slower)"


# torch.compile pays only where its compile time (about a minute per network on this CPU) is won back:
# ``compile=auto`` compiles what was measured to gain, on runs of at least this many steps.
COMPILE_MIN_STEPS = 2000


def compile_decision(
    setting: str, pays: bool, steps: int, device: torch.device, what: str, min_steps: int = COMPILE_MIN_STEPS
) -> tuple[bool, str | None]:
    """Whether to ``torch.compile`` ``what``, and a note to log when ``auto`` compiles.

    ``auto``: on a CPU with a C++ compiler (TorchInductor builds C++ kernels), where it was measured to
    gain (``pays``) and for runs of at least ``min_steps`` steps; off on GPUs (not measured
    here). ``on``: always (an error without a C++ compiler on the CPU); ``off``: never.
    """
    if setting not in ("auto", "on", "off"):
        raise TailganError(f"compile={setting!r} is not a choice; use auto, on or off")
    if setting == "off":
        return False, None
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if torch.device(device).type == "cpu" and compiler is None:
        if setting == "on":
            raise TailganError(
                "compile=on needs a C++ compiler on the CPU (torch.compile builds C++ kernels); install g++ "
                "(e.g. apt-get install g++) or set compile=off"
            )
        return False, None
    if setting == "on":
        return True, None
    if torch.device(device).type != "cpu" or not pays or steps < min_steps:
        return False, None
    return True, f"compiling {what} (torch.compile; a minute or two before the first steps)"

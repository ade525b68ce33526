"""Where the compute runs: one process on the CPU, or many under ``accelerate launch``/``torchrun``.

Hugging Face Accelerate owns the process group and the model wrapping (DDP here;
FSDP and DeepSpeed through an ``accelerate config``), so a stage scales from a laptop to
a multi-node GPU job without code changes: ``runtime.launcher`` in params.yaml is the
command prefix that starts it. What this module adds is what our loop needs on top:

- batches are drawn once per *global* step and cut into one contiguous shard per
  process, so N processes × ``per_device_train_batch_size`` = the global batch, and N
  processes with batch b/N follow the same trajectory as one with batch b;
- predictions are sharded across processes and gathered back into split order, so every
  example is scored exactly once;
- only the main process writes outputs.

On one process nothing is wrapped, so a CPU run is exactly the single-process loop.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


class Engine:
    def __init__(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        # cpu=True on a machine without CUDA is what makes a torchrun/accelerate launch of N
        # CPU processes use gloo (MULTI_CPU); with cpu=False accelerate falls back to one process.
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no",
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def use_bf16(self, bf16: bool | str) -> bool:
        """``runtime.bf16`` on this device: ``auto`` is on for the CPU only (see mtkd.params.Runtime)."""
        return self.device.type == "cpu" if bf16 == "auto" else bool(bf16)

    def autocast(self, bf16: bool | str):
        # Our own autocast rather than accelerate's mixed_precision, so the CPU path is the same
        # code on one process or many; bf16 needs no loss scaling (unlike fp16).
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16(bf16))

    def prepare(self, *modules):
        """Move to the device; wrap for data parallelism only when there is more than one process."""
        moved = [m.to(self.device) for m in modules]
        if not self.distributed:
            return moved
        return [self.accelerator.prepare_model(m) for m in moved]

    def unwrap(self, module):
        return self.accelerator.unwrap_model(module) if self.distributed else module

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This process's contiguous part of a global batch."""
        return np.array_split(idx, self.world)[self.rank] if self.distributed else idx

    def gather_rows(self, rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        """Reassemble per-process ``values`` (for split positions ``rows``) into ``[n, ...]`` in split order."""
        if not self.distributed:
            out = np.empty((n, *values.shape[1:]), dtype=values.dtype)
            out[rows] = values
            return out
        width = -(-n // self.world)
        pad_rows = np.full(width, -1, dtype=np.int64)
        pad_rows[:len(rows)] = rows
        pad_vals = np.zeros((width, *values.shape[1:]), dtype=values.dtype)
        pad_vals[:len(rows)] = values
        all_rows = self.accelerator.gather(torch.from_numpy(pad_rows).to(self.device)).cpu().numpy()
        all_vals = self.accelerator.gather(torch.from_numpy(pad_vals).to(self.device)).cpu().numpy()
        keep = all_rows >= 0
        if np.sort(all_rows[keep]).tolist() != list(range(n)):
            raise RuntimeError("distributed prediction did not score every example exactly once")
        out = np.empty((n, *values.shape[1:]), dtype=values.dtype)
        out[all_rows[keep]] = all_vals[keep]
        return out

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss) if self.distributed else loss.backward()

    def average_gradients(self, params) -> None:
        """All-reduce (mean) the gradients of parameters that no DDP wrapper looks after."""
        if not self.distributed:
            return
        for p in params:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world

    def wait(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()


@functools.lru_cache(maxsize=1)
def get_engine() -> Engine:
    return Engine()


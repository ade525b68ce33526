"""On a machine without the asset packages (the GPU box): unpack what ``bench/out/carry`` brought.

``bench/out/carry/minilm`` holds MiniLM-L6's config and tokenizer with its weights in bf16
(to fit the 64 MiB transfer); they are widened back to fp32 here. Throughput does not depend
on the weights' low bits. Usage: ``python -m bench.device_setup DEST`` then
``MTKD_BENCH_MINILM=DEST/minilm python -m bench.run --device cuda --data-dir bench/out/carry/prepared``.
"""

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

src = Path(__file__).resolve().parent / "out" / "carry" / "minilm"
dest = Path(sys.argv[1]) / "minilm"
dest.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.name != "model.bf16.safetensors":
        shutil.copy(f, dest / f.name)
sd = load_file(str(src / "model.bf16.safetensors"))
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, str(dest / "model.safetensors"))
print(f"wrote {dest}")

#!/usr/bin/env bash
# The checks of rest_hf that need a GPU, in one run (one CUDA GPU is enough):
#
#   1. the CUDA path of the model and of SPIM's code on one process: the parallelized tiny Swin and ConvNeXt on
#      CUDA against the same models on the CPU in fp64, logits and a training step's gradients, fp32 within
#      1e-4 and bf16 autocast within the tolerance printed (multi-process NCCL needs one GPU per process:
#      with one GPU it cannot run, see README "Clusters"); 1b. `spatial/windows.py`'s regions on CUDA;
#   2. `rest-hf predict` holistic on CUDA in bf16 against the CPU in fp32 (labels that agree on >= 99.5 %);
#   3. the GPU benchmark rows of docs/benchmarks.md: Swin-L REST on a 6800 x 7200 scene (bench_predict.py),
#      the stage-1 interaction attention of a 12800 x 12800 scene as one of 16 GPUs computes it, and
#      scripts/bench_spatial.py on one process.
#
#   bash scripts/gpu_check.sh [OUT_DIR]      # writes OUT_DIR/gpu_check.log (default: ./gpu-check)
#
# Exits non-zero on the first failed check; the benchmarks only report.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-python}"

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$python" - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU path"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF

step "1. SPIM code on CUDA against the CPU in fp64 (fp32 <= 1e-4, bf16 stated)"
"$python" - <<'EOF'
import copy

import torch

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.spatial import SpatialContext, parallelize_spatial, reduce_spatial_gradients

BF16_TOL = 0.1  # logits of the tiny models are O(1); bf16 keeps 8 bits of mantissa over ~20 layers
ok = True
for preset, (height, width) in (("tiny-swin", (160, 224)), ("tiny-convnext", (192, 256))):
    torch.manual_seed(0)
    model = RestForSemanticSegmentation(RestConfig.from_preset(preset, num_labels=3)).train()
    reference = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, height, width, generator=generator)
    labels = torch.randint(0, 3, (2, height, width), generator=generator)
    expected = reference(pixels.double(), labels=labels)
    expected.loss.backward()
    cuda = parallelize_spatial(model.cuda(), SpatialContext.init())
    got = cuda(pixels.cuda(), labels=labels.cuda())
    got.loss.backward()
    reduce_spatial_gradients(cuda, cuda.spatial_context)
    logit_diff = (got.logits.double().cpu() - expected.logits).abs().max().item()
    grads = dict(reference.named_parameters())
    grad_diff = max(
        ((p.grad.double().cpu() - grads[n].grad).abs().max() / (grads[n].grad.abs().max() + 1e-6)).item()
        for n, p in cuda.named_parameters()
        if p.grad is not None
    )
    cuda.eval()
    reference.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = cuda(pixels.cuda()).logits.float().cpu()
    with torch.no_grad():
        plain = reference(pixels.double()).logits
    bf16_diff = (bf16.double() - plain).abs().max().item()
    passed = logit_diff <= 1e-4 and grad_diff <= 1e-3 and bf16_diff <= BF16_TOL
    ok &= passed
    print(f"{preset}: fp32 logits {logit_diff:.2e} (<= 1e-4), grads {grad_diff:.2e} (<= 1e-3 of each max + 1e-6), "
          f"bf16 logits {bf16_diff:.2e} (<= {BF16_TOL}) {'ok' if passed else 'FAILED'}")
raise SystemExit(0 if ok else 1)
EOF

step "1b. spatial/windows.py on CUDA (host-computed indices and weights reach the device)"
# The decode head's one-exchange path and the any-ratio resize use these; in the model they need two processes.
"$python" -m pytest -q -p no:cacheprovider tests/spatial/test_windows.py

step "2. rest-hf predict holistic on CUDA in bf16 against the CPU in fp32"
"$python" - "$out" <<'EOF'
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

out = Path(sys.argv[1])
scene = out / "scene.tif"
rng = np.random.default_rng(0)
y, x = np.mgrid[0:1536, 0:2048]
pixels = np.stack([120 + 80 * np.sin(0.01 * y + b) * np.cos(0.013 * x) + rng.normal(0, 8, y.shape) for b in range(3)])
profile = dict(driver="GTiff", width=2048, height=1536, count=3, dtype="uint8", crs="EPSG:32633",
               transform=from_origin(500000, 4000000, 1, 1), tiled=True)
with rasterio.open(scene, "w", **profile) as dst:
    dst.write(np.clip(pixels, 0, 255).astype("uint8"))
runs = {"cpu": ["--device", "cpu"], "cuda": ["--device", "cuda", "--dtype", "bfloat16"]}
labels = {}
for name, options in runs.items():
    target = out / f"labels_{name}.tif"
    done = subprocess.run([sys.executable, "-m", "rest_hf", "predict", str(scene), "-o", str(target),
                           "--model", "tiny-convnext", "--overwrite", *options], capture_output=True, text=True)
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "", done.stderr.strip()[-500:])
    if done.returncode:
        raise SystemExit(f"predict on {name} failed")
    with rasterio.open(target) as src:
        labels[name] = src.read(1)
agree = float((labels["cpu"] == labels["cuda"]).mean())
print(f"labels agree on {100 * agree:.2f} % of the pixels (>= 99.5 %)")
raise SystemExit(0 if agree >= 0.995 else 1)
EOF

step "3a. benchmark: Swin-L REST at 6800 x 7200, bf16, holistic on 1 GPU and windowed (bench_predict.py)"
"$python" scripts/bench_predict.py --device cuda --dtype bfloat16 --models large --base-sizes 6800x7200 \
    --interaction-stages all --runs holistic:1 windowed:1 --window 2048 || echo "bench_predict failed (reported)"

step "3b. benchmark: stage-1 interaction attention of a 12800 x 12800 Swin-L scene, one GPU's share of 16"
"$python" - <<'EOF'
import time

import torch
import torch.nn.functional as F

tokens = (12800 // 4) ** 2  # stage 1 of Swin-L: stride 4
heads, channels = 6, 192
queries = tokens // 16  # a 4x4 grid: this GPU's tile; keys and values of the whole scene (all-gather path)
q = torch.randn(1, heads, queries, channels // heads, device="cuda", dtype=torch.bfloat16)
kv = torch.randn(2, 1, heads, tokens, channels // heads, device="cuda", dtype=torch.bfloat16)
F.scaled_dot_product_attention(q[:, :, :1024], kv[0], kv[1])
torch.cuda.synchronize()
start = time.perf_counter()
F.scaled_dot_product_attention(q, kv[0], kv[1])
torch.cuda.synchronize()
print(f"{tokens:,} tokens, {queries:,} queries on this GPU: {time.perf_counter() - start:.2f} s, "
      f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
EOF

step "3c. benchmark: scripts/bench_spatial.py on one GPU (P = 1 rows)"
"$python" scripts/bench_spatial.py --device cuda --presets tiny-convnext swin-large --sizes 1024 2048 --grids \
    || echo "bench_spatial failed (reported)"

step "done: every check passed; the log is $log"

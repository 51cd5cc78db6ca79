#!/bin/sh
# Builds what the GPU path needs (no CMocka required) and runs, on a
# machine with an NVIDIA GPU: the kernels against their C references, the
# GPU benchmark, and an end-to-end run on the cuda backend.
# Usage: tools/gpu-check.sh [OUTDIR]   (figures and logs go to OUTDIR)
set -u
out=${1:-build/gpu-check}
mkdir -p "$out"
jobs=$(nproc 2>/dev/null || echo 4)
rc=0

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory \
	--format=csv 2>&1 | tee "$out/device.txt"
make -j"$jobs" build/libkvc.a build/kvcctl build/tests/gpu/test_gpu \
	build/bench/gpu/bench_gpu 2>&1 | tail -n 20 | tee "$out/build.log"
[ -x build/tests/gpu/test_gpu ] || { echo "gpu-check: build failed"; exit 1; }

echo "== test-gpu"
build/tests/gpu/test_gpu 2>&1 | tee "$out/test-gpu.log" | tail -n 40
[ "$(tail -n 1 "$out/test-gpu.log" | grep -c ' 0 failed')" -eq 1 ] || rc=1

echo "== bench-gpu"
build/bench/gpu/bench_gpu --json "$out/bench-gpu.json" >"$out/bench-gpu.log" 2>&1 || rc=1
tail -n 60 "$out/bench-gpu.log"

echo "== kvcctl run --backend cuda"
build/kvcctl run --backend cuda --json >"$out/run-cuda.json" 2>"$out/run-cuda.err" || rc=1
cat "$out/run-cuda.err"
build/kvcctl run --backend cuda 2>&1 | tee "$out/run-cuda.txt" | tail -n 40
echo "gpu-check: exit $rc"
exit $rc

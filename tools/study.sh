#!/bin/sh
# The fragmentation study of Documentation/fragmentation.rst: the request
# trace replayed under eviction policies, compaction modes, placement
# policies, chunk sizes and layouts. Tables (text and CSV) and figures go
# to OUT. Usage: tools/study.sh [KVCCTL] [CSV] [OUT]; JOBS sets the
# configurations replayed at once (default: the CPUs).
set -eu
KVCCTL=${1:-build/kvcctl}
CSV=${2:-data/azure_conv_2023.csv}
OUT=${3:-build/study}
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN)}

# A Llama-3-8B-shaped cache: 32 layers, 8 KV heads, head dim 128, f16.
LLAMA="layers=32,kv-heads=8,head-dim=128,block=16,dtype=f16"
# Every step weighs in the means; the series keep one step in ten.
COMMON="--model $LLAMA --capacity 16G --step-ms 50 --sample-every 10 --jobs $JOBS"

mkdir -p "$OUT"
replay() {
	name=$1
	shift
	echo "study: $name" >&2
	"$KVCCTL" replay "$CSV" "$@" --summary-csv "$OUT/$name.csv" \
		--plot "$OUT/$name" >"$OUT/$name.txt"
	cat "$OUT/$name.txt"
}

# 1. Eviction policies against compaction modes (fullest-first placement).
replay policies $COMMON --policy full,kvcompress,h2o,snapkv,pyramidkv \
	--rate 8 --compact off,full,proactive
# 2. Placement, where compaction does not hide it.
replay placement $COMMON --policy kvcompress --rate 8 --compact off \
	--placement fullest,first-fit,random
# 3. Chunk size and watermark, without compaction.
replay chunks $COMMON --policy kvcompress --rate 8 --compact off \
	--chunk 512K,2M,8M --watermark 0,1,8
# 4. The vLLM paper's Figure 2, re-derived on OPT-13B in 12 GiB: contiguous
#    reservations (Orca Max, Pow2, Oracle) against paged layouts.
#    vLLM does not compact: neither does the paged layout here.
replay figure2 --model opt-13b --capacity 12G --max-len 2048 --step-ms 50 \
	--sample-every 10 --jobs "$JOBS" --compact off --policy full \
	--layout contig-max,contig-pow2,contig-oracle,paged,per-head \
	--requests 4000

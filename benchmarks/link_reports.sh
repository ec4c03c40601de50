#!/usr/bin/env bash
# Regenerates reports/link/: split inference over a tbf-shaped veth link (root) with the planner's
# prediction beside it (link --plan: plan's timing of each picture just before it crosses the
# link; its server half on the server's core), plan alone (VGG16: every cut), and the codec sweep the link
# must agree with. Run on an otherwise idle machine.
set -euo pipefail
W=${SHARED:-../shared}/weights/mobilenet_v2-imagenet-int8dequant.pth
OUT=${OUT:-reports/link}
M=$OUT/mobilenet_v2
common=(--dataset imagenet-val-1300 --codec bpg --qp 35 --layout gray)
splitbench link mobilenet_v2 --weights "$W" "${common[@]}" --at input,bottleneck3,bottleneck6,bottleneck13,edge \
    --bandwidth 1,10,100 --rtt 0 --limit 100 --plan --out "$M/link"
splitbench plan mobilenet_v2 --weights "$W" "${common[@]}" --at bottleneck3,bottleneck6,bottleneck13 \
    --bandwidth 1,10,100 --rtt 0 --limit 20 --repeats 1 --head-start tbf --out "$M/plan"
splitbench codec mobilenet_v2 --weights "$W" --dataset imagenet-val-1300 --at bottleneck6 --codec bpg --qp 35 \
    --layout gray --limit 100 --out "$M/codec" --cache cache
V=$OUT/vgg16  # random weights: latency does not depend on them
splitbench link vgg16 --weights none --dataset imagenet-val-1300 --codec minmax8 --at input,pool2,pool3,pool4,pool5,edge \
    --bandwidth 1,10,100 --rtt 0 --limit 20 --plan --out "$V/link"
splitbench plan vgg16 --weights none --dataset imagenet-val-1300 --codec minmax8 --at all \
    --bandwidth 1,10,100 --rtt 0 --limit 3 --repeats 1 --head-start tbf --out "$V/plan"

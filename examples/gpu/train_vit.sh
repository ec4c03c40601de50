# Train the seed 002 reference ViT on a bare GPU machine with splitbench's own train command,
# in a fixed time budget: a 300-step bf16 probe sizes the epoch count (at most MAX_EPOCHS) so that
# the cosine schedule finishes inside BUDGET_S; what is left of it goes to bench_train.py.
# Pack first (examples/gpu/pack.sh), carry .devcarry/, then from the repository root there:
#   bash .devcarry/run.sh OUTDIR BUDGET_S [MAX_EPOCHS] [TRAIN_LIMIT]
# EPOCHS=N skips the probe and trains N epochs; INIT=file.safetensors warm-starts from those weights
# (a second cosine cycle, as in SGDR) instead of from scratch.
# OUTDIR receives train.tar (train.csv/json/md/png), the fp16 export in 15 MB parts
# (cat export.part* > vit-cifar10-fp16.safetensors), probe.jsonl and bench.jsonl.
# A run cut short brings back the last checkpoint's weights (partial.part*) and its history.
set -u
OUTDIR=$1; BUDGET=$2; MAXEP=${3:-50}; LIMIT=${4:-}
T0=$(date +%s)
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
mkdir -p /tmp/data /tmp/site "$OUTDIR"
cp -r .devcarry/site/* /tmp/site/
[ "${STUBS:-1}" = 1 ] && cp .devcarry/stubs/*.py /tmp/site/
export PYTHONPATH=$PWD:/tmp/site
# the data manifests are the package splitbench.data_manifests once installed; link them in place
[ -e splitbench/data_manifests ] || ln -sfn ../data_manifests splitbench/data_manifests
mkdir -p /tmp/data/cifar10-jpeg; tar xJf .devcarry/cifar.tar.xz -C /tmp/data/cifar10-jpeg
export SPLITBENCH_DATA=/tmp/data
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import torch, torchvision; print('torch', torch.__version__, torchvision.__version__, torch.cuda.is_available())"
echo "setup $(( $(date +%s) - T0 )) s"

if [ -z "${EPOCHS:-}" ]; then
# Probe: bf16 training throughput of this exact model and batch, to size the epoch count to the budget.
$PY benchmarks/bench_train.py --modes ${PROBE_MODE:-bf16} --steps ${PROBE_STEPS:-300} --parity-steps 0 --batch-size 64 | tee "$OUTDIR/probe.jsonl"
IPS=$($PY -c "import json,sys; rows=[json.loads(l) for l in open('$OUTDIR/probe.jsonl')]; print(rows[-1]['${PROBE_MODE:-bf16}']['images_per_s'])")
NTRAIN=${LIMIT:-50000}
LEFT=$(( BUDGET - ($(date +%s) - T0) - 60 ))   # 60 s: decode, start-up, export, copies
EPOCHS=$($PY -c "e=int($LEFT/($NTRAIN/$IPS*1.25+1.5)); print(max(1,min($MAXEP,e)))")
echo "probe: $IPS images/s bf16; $LEFT s left -> $EPOCHS epochs"
fi

EXTRA=""; [ -n "$LIMIT" ] && EXTRA="--limit $LIMIT --test-limit 1000"
timeout $(( BUDGET - ($(date +%s) - T0) - 10 )) $PY -m splitbench train vit --weights ${INIT:-none} --epochs "$EPOCHS" \
  --batch-size 64 --lr 1e-4 --randaugment 0 --seed 0 --precision auto --workers 8 \
  --checkpoint-dir /tmp/ckpt --out /tmp/out $EXTRA
echo "train rc $? at $(( $(date +%s) - T0 )) s"
ls -l /tmp/out || true
if [ -f /tmp/out/vit-cifar10-fp16.safetensors ]; then
  split -b 15M -d /tmp/out/vit-cifar10-fp16.safetensors "$OUTDIR/export.part"
  sha256sum /tmp/out/vit-cifar10-fp16.safetensors
else  # the run did not finish: bring back the last checkpoint's weights and history
  $PY - <<'EOF'
import torch, json
from safetensors.torch import save_file
c = torch.load('/tmp/ckpt/last.pt', weights_only=True, map_location='cpu')
save_file({k: v.half().contiguous() for k, v in c['model'].items()}, '/tmp/partial-fp16.safetensors')
json.dump({'history': c['history'], 'partial': None if c['partial_epoch'] is None else
           {k: c['partial_epoch'][k] for k in ('epoch', 'step')}}, open('/tmp/out/partial.json', 'w'))
EOF
  split -b 15M -d /tmp/partial-fp16.safetensors "$OUTDIR/partial.part"
fi
tar cf "$OUTDIR/train.tar" -C /tmp/out --exclude='*.safetensors' .
# With what is left: the full benchmark (fp32, bf16, bf16 + compile, and loss parity).
LEFT=$(( BUDGET - ($(date +%s) - T0) - 5 ))
[ $LEFT -gt 40 ] && timeout $LEFT $PY benchmarks/bench_train.py ${BENCH_ARGS:---steps 300} --parity-steps 200 --batch-size 64 | tee "$OUTDIR/bench.jsonl"
echo "done at $(( $(date +%s) - T0 )) s"

#!/usr/bin/env bash
# Pack what examples/gpu/train_vit.sh needs on a bare GPU machine that has torch, torchvision,
# typer, rich, pandas and matplotlib but neither splitbench's other dependencies nor ../shared:
#   .devcarry/cifar.tar.xz  CIFAR-10 (the JPEG copies in ../shared; 55 MB of files -> 18.5 MB xz)
#   .devcarry/site/          the pure-Python packages the train command imports (vit-pytorch, fvcore, ...)
#   .devcarry/stubs/         empty `av` and `imagecodecs` modules: the CLI imports the codec
#                            modules at start-up, training never calls them, and their wheels
#                            would not fit beside the data (provenance records them as absent)
# Run from the repository root with the development venv active; .devcarry/ is git-ignored.
set -euo pipefail
DATA=${SPLITBENCH_DATA:-../shared/data}
SITE=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
grep -qx "/.devcarry/" .git/info/exclude 2>/dev/null || echo "/.devcarry/" >> .git/info/exclude
rm -rf .devcarry && mkdir -p .devcarry/site .devcarry/stubs
for package in vit_pytorch fvcore iopath yacs termcolor; do
    cp -r "$SITE/$package" "$SITE/$package"-*.dist-info .devcarry/site/
done
find .devcarry/site -name __pycache__ -prune -exec rm -rf {} +
for module in av imagecodecs; do
    echo '"""Placeholder on the GPU machine: the codec library is absent there and training does not use it."""' \
        > .devcarry/stubs/$module.py
done
tar cf - -C "$DATA/cifar10-jpeg" --sort=name train test | xz -T0 -6 > .devcarry/cifar.tar.xz
cp examples/gpu/train_vit.sh .devcarry/run.sh
du -sh .devcarry

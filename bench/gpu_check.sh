#!/usr/bin/env bash
# The GPU check on a lent device machine (see bench/gpu_check.py's docstring).
#
#   bench/gpu_check.sh prepare    here, once: MNIST's .gz files into .gpu_data/MNIST/raw and the
#                                 pytorch-metric-learning wheel into .whl, both ignored by
#                                 .git/info/exclude and named in the run's carry list
#   bash bench/gpu_check.sh [ARGS] on the device machine (run: carry [".gpu_data", ".whl"]); ARGS go to
#                                 python -m bench.gpu_check (e.g. --live, --parts engine,fp32)
#
# The device machine starts bare and offline, with its own torch (2.11) and without
# pytorch-metric-learning, which dmlviz's geometry imports: the wheel is installed into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."

PML_VERSION=2.9.0  # the version this project's .venv holds

if [[ "${1:-}" == "prepare" ]]; then
    # The offline datasets, found as tests/conftest.py finds them.
    shared=""
    for candidate in "${DMLVIZ_TEST_DATA:-}" ../shared/data /work/shared/data; do
        if [[ -n "$candidate" && -d "$candidate/MNIST/raw" ]]; then shared="$candidate"; break; fi
    done
    [[ -n "$shared" ]] || { echo "error: no MNIST/raw in \$DMLVIZ_TEST_DATA, ../shared/data or /work/shared/data" >&2; exit 2; }
    # Only the .gz files (11 MB): unpacked MNIST would take the tree past the device's 64 MiB.
    rm -rf .gpu_data
    mkdir -p .gpu_data/MNIST/raw
    for f in "$shared"/MNIST/raw/*.gz; do install -m 644 "$f" .gpu_data/MNIST/raw/; done
    exclude="$(git rev-parse --git-path info/exclude)"
    mkdir -p "$(dirname "$exclude")"
    for pattern in /.gpu_data/ /.whl/; do
        grep -qxF "$pattern" "$exclude" 2>/dev/null || echo "$pattern" >>"$exclude"
    done
    if ! ls .whl/pytorch_metric_learning-"$PML_VERSION"-*.whl >/dev/null 2>&1; then
        python="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
        "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "pytorch-metric-learning==$PML_VERSION"
    fi
    du -sh .gpu_data .whl
    echo 'ready: run(command="bash bench/gpu_check.sh", carry=[".gpu_data", ".whl"], timeout_s=560)'
    exit 0
fi

python="${PYTHON:-python3}"
if ls .whl/*.whl >/dev/null 2>&1 && ! "$python" -c "import pytorch_metric_learning" 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# A copy of the data outside the tree: torchvision unpacks MNIST (55 MB) and dmlviz writes its cache there.
data="$(mktemp -d)/data"
if [[ -d .gpu_data/MNIST/raw ]]; then
    cp -r .gpu_data "$data"
else
    echo "warning: no .gpu_data (run bench/gpu_check.sh prepare here and carry it); using \$DMLVIZ_DATA_DIR" >&2
    data="${DMLVIZ_DATA_DIR:-$HOME/.cache/dmlviz}"
fi
export PYTHONUNBUFFERED=1 DMLVIZ_DATA_DIR="$data"
exec "$python" -m bench.gpu_check --device "${GPU_CHECK_DEVICE:-cuda}" --data-dir "$data" "$@"

# Sourced by the scripts in this folder: create .venv if needed, install textgru with the given extra on the CPU
# build of PyTorch (constraints-cpu.txt), and set the offline, single-thread environment.
#   . scripts/setup_venv.sh dev
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints-cpu.txt -e ".[$1]"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

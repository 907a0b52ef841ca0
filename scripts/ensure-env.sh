#!/usr/bin/env bash
# Print the Python interpreter that has this project's dependencies, creating it if needed.
#  1. ./.venv, when it is up to date with pyproject.toml;
#  2. the system python3, when it already has everything (the GPU host: no network, preinstalled);
#  3. otherwise build ./.venv: torch==2.13.0 first (the CPU build; a bare 'torch' would pull a
#     multi-GB CUDA build), then the project with its dev extra.
# All chatter goes to stderr; stdout carries only the interpreter path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp=$venv/.installed
need='import torch, numpy, pandas, tabulate, tqdm, matplotlib, pytest'
if [[ -x $venv/bin/python && -f $stamp && $stamp -nt pyproject.toml ]]; then
  echo "$PWD/$venv/bin/python"; exit 0
fi
if [[ ! -x $venv/bin/python ]] && python3 -c "$need" 2>/dev/null; then
  echo "using the system python3 (dependencies already installed)" >&2
  command -v python3; exit 0
fi
echo "setting up $venv (torch 2.13.0 CPU build + project[dev]) ..." >&2
{
  python3 -m venv $venv
  $venv/bin/pip install -q --upgrade pip
  $venv/bin/python -c 'import torch' 2>/dev/null || $venv/bin/pip install -q torch==2.13.0
  $venv/bin/pip install -q -e '.[dev]'
} >&2 || {
  echo "error: could not install the dependencies into $venv (no network?)." >&2
  echo "Install them yourself (pip install torch==2.13.0 && pip install -e '.[dev]') and re-run." >&2
  exit 1
}
touch $stamp
echo "$PWD/$venv/bin/python"

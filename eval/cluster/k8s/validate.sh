#!/usr/bin/env bash
# Validates the Kubernetes manifests offline against the Kubernetes OpenAPI schemas (strict: no
# unknown fields), for the oldest and newest Kubernetes versions the recipe supports. Installs
# kubernetes-validate (PyPI) into a temporary venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0"
for version in 1.29.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" "$here"/*.yaml
done

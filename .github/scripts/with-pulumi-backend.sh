#!/usr/bin/env bash
# Run a command against the team's Pulumi state: the backend and secrets settings come in as BACKEND_URL,
# ACCESS_TOKEN and PASSPHRASE (from repository variables and secrets) and are exported only when set,
# because an unset GitHub secret arrives as an empty string and Pulumi takes an empty
# PULUMI_CONFIG_PASSPHRASE as a real (empty) passphrase.
set -euo pipefail

if [ -n "${BACKEND_URL:-}" ]; then export PULUMI_BACKEND_URL="$BACKEND_URL"; fi
if [ -n "${ACCESS_TOKEN:-}" ]; then export PULUMI_ACCESS_TOKEN="$ACCESS_TOKEN"; fi
if [ -n "${PASSPHRASE:-}" ]; then export PULUMI_CONFIG_PASSPHRASE="$PASSPHRASE"; fi

if [ -z "${PULUMI_BACKEND_URL:-}" ] && [ -z "${PULUMI_ACCESS_TOKEN:-}" ]; then
  echo "::error::Set the repository variable PULUMI_BACKEND_URL (s3://BUCKET) or the secret PULUMI_ACCESS_TOKEN (Pulumi Cloud): CI must use the state the team shares."
  exit 1
fi
exec "$@"

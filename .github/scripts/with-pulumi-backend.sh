#!/usr/bin/env bash
# Run a command against the team's Pulumi state: the backend and secrets settings come in as BACKEND_URL,
# ACCESS_TOKEN, PASSPHRASE and ORGANIZATION (from variables and secrets) and are exported only when set,
# because an unset GitHub secret arrives as an empty string and Pulumi takes an empty
# PULUMI_CONFIG_PASSPHRASE as a real (empty) passphrase.
set -euo pipefail

if [ -n "${BACKEND_URL:-}" ]; then export PULUMI_BACKEND_URL="$BACKEND_URL"; fi
if [ -n "${ACCESS_TOKEN:-}" ]; then export PULUMI_ACCESS_TOKEN="$ACCESS_TOKEN"; fi
if [ -n "${PASSPHRASE:-}" ]; then export PULUMI_CONFIG_PASSPHRASE="$PASSPHRASE"; fi
# Pulumi CLI 3.259 and later read the default organisation from PULUMI_DEFAULT_ORGANIZATION.
if [ -n "${ORGANIZATION:-}" ]; then export PULUMI_DEFAULT_ORGANIZATION="$ORGANIZATION"; fi

if [ -z "${PULUMI_BACKEND_URL:-}" ] && [ -z "${PULUMI_ACCESS_TOKEN:-}" ]; then
  echo "::error::Set the variable PULUMI_BACKEND_URL (s3://BUCKET) or the secret PULUMI_ACCESS_TOKEN (Pulumi Cloud): CI must use the state the team shares."
  exit 1
fi
# On Pulumi Cloud a bare stack name (dev) resolves in the token's own default organisation, where `up` would
# create a second, empty stack whose AWS names collide with the real one's.
if [ -z "${PULUMI_BACKEND_URL:-}" ] && [ -z "${PULUMI_DEFAULT_ORGANIZATION:-}" ]; then
  echo "::error::Set the repository variable PULUMI_DEFAULT_ORGANIZATION to the Pulumi Cloud organisation that holds the stacks."
  exit 1
fi
exec "$@"

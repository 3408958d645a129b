#!/usr/bin/env bash
# Destroy a throwaway stack's resources and remove the stack, whatever state a cancelled or failed job left it
# in; a stack that is already gone is fine. Usage: remove-stack.sh STACK (in the project directory, with the
# Pulumi backend, its secrets and AWS credentials in the environment).
set -euo pipefail

stack=$1
if ! pulumi stack select --stack "$stack" --non-interactive >/dev/null 2>&1; then
  echo "Stack $stack does not exist: nothing to remove."
  exit 0
fi
# A job cancelled mid-update leaves the stack locked; `pulumi cancel` releases it (on every backend). It fails
# when no update is running, which is the usual case.
pulumi cancel --yes --stack "$stack" --non-interactive || true
# --refresh first reads what really exists, so resources whose creation was cut short are destroyed too.
pulumi destroy --yes --skip-preview --refresh --stack "$stack" --non-interactive
# Also deletes Pulumi.STACK.yaml.
pulumi stack rm --yes --stack "$stack" --non-interactive

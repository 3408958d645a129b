#!/usr/bin/env bash
# Create, or update in place, the pull request comment that starts with a marker, so every run of a job
# edits its one comment instead of adding another.
# Usage: sticky-comment.sh PR_NUMBER MARKER BODY_FILE   (needs GH_TOKEN and GITHUB_REPOSITORY)
set -euo pipefail

pr_number=$1
marker="<!-- $2 -->"
body_file=$3

comment=$(mktemp)
trap 'rm -f "$comment"' EXIT
{
  echo "$marker"
  cat "$body_file"
} >"$comment"

ids=$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$pr_number/comments" \
  --jq ".[] | select(.user.login == \"github-actions[bot]\" and (.body | startswith(\"$marker\"))) | .id")
comment_id=${ids%%$'\n'*}

if [ -n "$comment_id" ]; then
  gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$comment_id" -F "body=@$comment" >/dev/null
else
  gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$pr_number/comments" -F "body=@$comment" >/dev/null
fi

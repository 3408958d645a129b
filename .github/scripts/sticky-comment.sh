#!/usr/bin/env bash
# Create, or update in place, the pull request comment that starts with a marker, so every run of a job
# edits its one comment instead of adding another. GitHub refuses a comment body over 65,536 characters:
# a longer body is cut to fit and ends with a pointer to the run's job summary, which holds all of it.
# Usage: sticky-comment.sh PR_NUMBER MARKER BODY_FILE
# (needs GH_TOKEN, GITHUB_REPOSITORY, and GITHUB_SERVER_URL with GITHUB_RUN_ID for the pointer)
set -euo pipefail

pr_number=$1
marker="<!-- $2 -->"
body_file=$3
limit=65536
run_url="${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY/actions/runs/${GITHUB_RUN_ID:-}"

comment=$(mktemp)
trap 'rm -f "$comment"' EXIT
{
  echo "$marker"
  cat "$body_file"
} >"$comment"

# Characters, not bytes, as GitHub counts them; the cut ends on a line and closes a code block it opened.
python3 - "$comment" "$limit" "$run_url" <<'PYTHON'
import sys
from pathlib import Path

path, limit, run_url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
text = path.read_text(encoding="utf-8")
if len(text) > limit:
    note = f"\n\n**Cut to fit a comment.** The whole text is in the [job summary]({run_url}).\n"
    fence = "\n```"
    kept = text[: limit - len(note) - len(fence)]
    kept = kept[: kept.rfind("\n")] if "\n" in kept else kept
    if kept.count("```") % 2:
        kept += fence
    path.write_text(kept + note, encoding="utf-8")
PYTHON

ids=$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$pr_number/comments" \
  --jq ".[] | select(.user.login == \"github-actions[bot]\" and (.body | startswith(\"$marker\"))) | .id")
comment_id=${ids%%$'\n'*}

if [ -n "$comment_id" ]; then
  gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$comment_id" -F "body=@$comment" >/dev/null
else
  gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$pr_number/comments" -F "body=@$comment" >/dev/null
fi

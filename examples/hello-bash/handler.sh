#!/usr/bin/env bash
# Example bash-streaming function (see ../../stack.yml): `curl -d Ada .../function/hello-bash`
# answers "Hello from bash: Ada". The request body is on stdin; stdout is the response.
set -euo pipefail

body=$(cat)
printf 'Hello from bash: %s\n' "$body"

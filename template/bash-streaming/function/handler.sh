#!/usr/bin/env bash
# bash-streaming handler: the request body arrives on stdin and whatever this script prints on
# stdout is the response, streamed to the caller as it is written. Any command works here (jq,
# awk, sed, curl, a binary of your own); stderr goes to the function's logs.
# Request details are environment variables: Http_Method, Http_Path, Http_Query,
# Http_Content_Type, Http_X_Call_Id...
set -euo pipefail

# Starter: answer with the request body in upper case (`curl -d hello` → HELLO).
tr '[:lower:]' '[:upper:]'

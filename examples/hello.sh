#!/bin/sh
# A function for fwatchdog's default (streaming) mode: the request body arrives on stdin and
# stdout is the response; request details come as Http_* environment variables.
name=$(cat)
echo "Hello, ${name:-world}! (${Http_Method} ${Http_Path})"

#!/usr/bin/env bash
# Runs every test: installs redis-server if it is missing (the tests start
# their own servers), then go vet and go test -race.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# The tests start their own servers; a system service is not needed.
go vet ./...
go test -race -count=1 "$@" ./...

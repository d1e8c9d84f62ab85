#!/usr/bin/env bash
# Runs every test: installs redis-server, redis-sentinel and redis-cli if
# they are missing (the tests start their own servers, Sentinels and
# Clusters), Node.js, npm and the jose package that TestJoseInterop mints
# tokens with, Chromium, which TestDashboard drives headless, and
# stripe-mock, which the Stripe tests make Checkout Sessions on, then go vet
# and go test -race.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=""
# apt_install installs Debian packages, reading the package lists once.
apt_install() {
	if [ -z "$apt_updated" ]; then
		$sudo apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null ||
	! command -v redis-sentinel >/dev/null; then
	apt_install redis-server redis-tools redis-sentinel
fi
# The tests start their own servers; a system service is not needed.

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	apt_install nodejs npm
fi
if ! command -v chromium >/dev/null; then
	apt_install chromium
fi
# jose, at the version auth/testdata/jose/package-lock.json pins.
npm ci --silent --prefix auth/testdata/jose
# stripe-mock, built from the Go module proxy into GOPATH/bin, where the
# tests look for it.
if ! command -v stripe-mock >/dev/null && [ ! -x "$(go env GOPATH)/bin/stripe-mock" ]; then
	GOFLAGS= go install github.com/stripe/stripe-mock@v0.203.0
fi
go vet ./...
go test -race -count=1 "$@" ./...

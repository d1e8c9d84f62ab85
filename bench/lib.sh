# Shared setup of the bench scripts, sourced by them: checks the tools, makes
# a work directory removed at exit (KEEP=1 keeps it), builds the gateway into
# it, picks free ports, and starts a local redis-server. It leaves $work,
# $pids, $redis_port, $redis_pid, $up_port, $plain_port, $metered_port,
# $plain_admin, $metered_admin, $secret and $store (STORE=memory picks the
# memory store); start leaves $pid_NAME for each gateway it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

for bin in wrk redis-server curl; do
	command -v "$bin" >/dev/null || { echo "bench: $bin is missing: apt-get install wrk redis-server curl" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/tollgate" ./cmd/tollgate

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
redis_port=$(free_port); up_port=$(free_port); plain_port=$(free_port); metered_port=$(free_port)
plain_admin=$(free_port); metered_admin=$(free_port)
secret=bench-secret-0123456789-0123456789-abc
store="redis redis://127.0.0.1:$redis_port/0"
[ "${STORE:-redis}" = memory ] && store=memory

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")

# start NAME…: runs the gateway on $work/NAME.caddy for each NAME, and
# leaves its process id in $pid_NAME.
start() {
	for c in "$@"; do
		"$work/tollgate" run --adapter caddyfile --config "$work/$c.caddy" >"$work/$c.log" 2>&1 &
		pids+=($!)
		printf -v "pid_${c//[^A-Za-z0-9_]/_}" '%s' "$!"
	done
}

# wait_for URL: waits until URL answers.
wait_for() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "bench: $1 never answered" >&2; exit 1; }

# fund [ADMIN_PORT…]: mints $token for the account bench and credits it
# plenty through each admin port given ($metered_admin by default).
fund() {
	token=$("$work/tollgate" token --account bench --secret "$secret" --ttl 1h)
	local port
	for port in "${@:-$metered_admin}"; do
		curl -sf -X POST "http://127.0.0.1:$port/tollgate/accounts/bench/credit" \
			-d '{"amount":1000000000000,"id":"bench-funds"}' >/dev/null
	done
}

# fund_many N FILE ADMIN_PORT…: mints HS256 tokens for the accounts bench-0 …
# bench-(N-1) into FILE, one a line, and credits each of those accounts
# plenty through each admin port given, many credits at once (bench/mint).
fund_many() {
	local n=$1 file=$2 port urls=(); shift 2
	for port in "$@"; do urls+=("http://127.0.0.1:$port"); done
	[ -x "$work/mint" ] || go build -o "$work/mint" ./bench/mint
	"$work/mint" -alg HS256 -secret "$secret" -iss '' -aud '' -sub bench -n "$n" -out "$file" \
		-fund "$(IFS=,; echo "${urls[*]}")" -amount 1000000000000
}

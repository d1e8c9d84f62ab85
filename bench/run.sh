#!/usr/bin/env bash
# Compares a plain reverse_proxy with the same proxy behind tollgate (HS256,
# a per-request price, a local Redis), driven by the same wrk load in the same
# run, and prints requests per second, p50 and p99 for each and their ratio.
#
#   bench/run.sh [duration] [connections]     defaults: 10s 32
#
# STORE=memory measures the metered proxy on the memory store instead.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}

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
pids+=($!)

cat >"$work/upstream.caddy" <<CFG
{
	admin off
}
http://127.0.0.1:$up_port {
	respond "ok"
}
CFG
cat >"$work/plain.caddy" <<CFG
{
	admin 127.0.0.1:$plain_admin
}
http://127.0.0.1:$plain_port {
	reverse_proxy 127.0.0.1:$up_port
}
CFG
cat >"$work/metered.caddy" <<CFG
{
	admin 127.0.0.1:$metered_admin
	tollgate {
		store $store
		jwt {
			hmac_secret $secret
		}
	}
}
http://127.0.0.1:$metered_port {
	tollgate 1
	reverse_proxy 127.0.0.1:$up_port
}
CFG
for c in upstream plain metered; do
	"$work/tollgate" run --adapter caddyfile --config "$work/$c.caddy" >"$work/$c.log" 2>&1 &
	pids+=($!)
done

wait_for() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "bench: $1 never answered" >&2; exit 1; }
wait_for "http://127.0.0.1:$plain_port/"
wait_for "http://127.0.0.1:$metered_admin/config/"

token=$("$work/tollgate" token --account bench --secret "$secret" --ttl 1h)
curl -sf -X POST "http://127.0.0.1:$metered_admin/tollgate/accounts/bench/credit" \
	-d '{"amount":1000000000000,"id":"bench-funds"}' >/dev/null

# run NAME PORT [ARGS…]: one wrk run, printed as "NAME req/s p50 p99".
run() {
	local name=$1 port=$2; shift 2
	wrk -t2 -c"$conns" -d"$duration" --latency "$@" "http://127.0.0.1:$port/" >"$work/$name.wrk"
	local rps p50 p99
	rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name.wrk")
	p50=$(awk '$1=="50%" {print $2}' "$work/$name.wrk")
	p99=$(awk '$1=="99%" {print $2}' "$work/$name.wrk")
	printf '%-8s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
	eval "${name}_rps=$rps"
}

# Warm both up, then alternate, so that both meet the same machine.
wrk -t1 -c4 -d2s "http://127.0.0.1:$plain_port/" >/dev/null
wrk -t1 -c4 -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$metered_port/" >/dev/null
run plain "$plain_port"
run metered "$metered_port" -H "Authorization: Bearer $token"
grep -q "Non-2xx" "$work/metered.wrk" && { echo "bench: the metered run had non-2xx answers:" >&2; grep Non-2xx "$work/metered.wrk" >&2; }
awk -v p="$plain_rps" -v m="$metered_rps" 'BEGIN { printf "ratio    %.3f (metered / plain)\n", m / p }'

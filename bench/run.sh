#!/usr/bin/env bash
# Compares a plain reverse_proxy with the same proxy behind tollgate (HS256,
# a per-request price, a local Redis), driven by the same wrk load in the same
# run, and prints requests per second, p50 and p99 for each and their ratio.
#
#   bench/run.sh [duration] [connections]     defaults: 10s 32
#
# STORE=memory measures the metered proxy on the memory store instead.
# ALG=RS256 or ALG=ES256 verifies tokens signed with a public key instead of
# HS256 (a hot caller's token is verified once, then served from the cache).
. "$(dirname "$0")/lib.sh"
duration=${1:-10s}
conns=${2:-32}
alg=${ALG:-HS256}
jwt="hmac_secret $secret"
case "$alg" in
HS256) ;;
RS256) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null ;;
ES256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null ;;
*) echo "bench: ALG must be HS256, RS256 or ES256" >&2; exit 1 ;;
esac
if [ "$alg" != HS256 ]; then
	openssl pkey -in "$work/key.pem" -pubout -out "$work/pub.pem"
	jwt="public_key $work/pub.pem
			issuer https://issuer.test/
			audience https://api.test/"
fi

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
			$jwt
		}
	}
}
http://127.0.0.1:$metered_port {
	tollgate 1
	reverse_proxy 127.0.0.1:$up_port
}
CFG
start upstream plain metered

wait_for "http://127.0.0.1:$plain_port/"
wait_for "http://127.0.0.1:$metered_admin/config/"

fund
if [ "$alg" != HS256 ]; then
	token=$(go run ./bench/mint -alg "$alg" -key "$work/key.pem" -sub bench)
fi

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

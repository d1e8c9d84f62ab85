#!/usr/bin/env bash
# Compares a plain reverse_proxy with the same proxy behind tollgate priced
# by the response byte (response_bytes 1 per 1MiB, on a local Redis), on 1 MiB
# and 100 MiB downloads, driven by the same wrk load in the same run. It prints
# the throughput of each, their ratio, and the store round trips the metered
# proxy made per response.
#
#   bench/stream.sh [duration] [connections]     defaults: 10s 4
#
# STORE=memory measures the metered proxy on the memory store instead.
. "$(dirname "$0")/lib.sh"
duration=${1:-10s}
conns=${2:-4}
mkdir "$work/files"
head -c $((1 << 20)) /dev/zero >"$work/files/1m"
head -c $((100 << 20)) /dev/zero >"$work/files/100m"

cat >"$work/upstream.caddy" <<CFG
{
	admin off
}
http://127.0.0.1:$up_port {
	root * $work/files
	file_server
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
	tollgate {
		price * {
			response_bytes 1 per 1MiB
		}
	}
	reverse_proxy 127.0.0.1:$up_port
}
CFG
start upstream plain metered

wait_for "http://127.0.0.1:$plain_port/1m"
wait_for "http://127.0.0.1:$metered_admin/config/"

fund

# metric NAME: the sum of a metric's samples on the metered proxy.
metric() {
	curl -s "http://127.0.0.1:$metered_admin/metrics" | awk -v m="$1" 'index($1, m) == 1 { s += $2 } END { printf "%d", s }'
}

# run NAME PORT FILE [ARGS…]: one wrk run, printed as "NAME MiB/s req/s".
run() {
	local name=$1 port=$2 file=$3; shift 3
	wrk -t2 -c"$conns" -d"$duration" --timeout 60s "$@" "http://127.0.0.1:$port/$file" >"$work/$name.wrk"
	local rps mibs
	rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name.wrk")
	mibs=$(awk -v f="$file" -v r="$rps" 'BEGIN { printf "%.1f", r * (f == "1m" ? 1 : 100) }')
	printf '%-16s %9s MiB/s %9s req/s\n' "$name" "$mibs" "$rps"
	if grep -q "Non-2xx\|Socket errors" "$work/$name.wrk"; then
		echo "bench: $name had errors:" >&2
		grep "Non-2xx\|Socket errors" "$work/$name.wrk" >&2
	fi
	eval "${name//[^a-z0-9]/_}_rps=$rps"
}

for file in 1m 100m; do
	wrk -t1 -c1 -d2s "http://127.0.0.1:$plain_port/$file" >/dev/null
	wrk -t1 -c1 -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$metered_port/$file" >/dev/null
	calls0=$(metric tollgate_store_duration_seconds_count); paid0=$(metric 'tollgate_requests_total{outcome="paid"}')
	run "plain-$file" "$plain_port" "$file"
	run "metered-$file" "$metered_port" "$file" -H "Authorization: Bearer $token"
	calls=$(( $(metric tollgate_store_duration_seconds_count) - calls0 ))
	paid=$(( $(metric 'tollgate_requests_total{outcome="paid"}') - paid0 ))
	plain_var="plain_${file}_rps"; metered_var="metered_${file}_rps"
	awk -v p="${!plain_var}" -v m="${!metered_var}" -v c="$calls" -v n="$paid" -v f="$file" \
		'BEGIN { printf "ratio %-10s %.3f (metered / plain), %.1f store calls per response\n", f, m / p, (n ? c / n : 0) }'
done

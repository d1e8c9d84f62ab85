#!/usr/bin/env bash
# Measures what leases (SPEC §4.2) buy: in one run, against the same upstream
# (a Caddy respond of a 1 KiB body), it drives with the same wrk load
#   plain          a plain reverse_proxy
#   memory         tollgate 1 on the memory store (leases off, its default)
#   redis-lease    tollgate 1 on Redis with leases (the default)
#   redis-nolease  tollgate 1 on Redis with lease off
# for two workloads: hot, one account (one token), and many, $ACCOUNTS
# accounts (default 1000), each request sent with the next of their tokens
# (a wrk Lua script, round robin; both workloads go through it). Rounds
# alternate between the variants (plain, memory, redis-lease, redis-nolease,
# plain, …) so that all meet the same machine.
#
#   bench/lease.sh [duration] [connections] [rounds]     defaults: 10s 32 3
#
# It prints each run, then per workload each variant's median req/s, its
# spread, its ratio to plain's median, its p99 latency, and, read during its
# runs: CPU µs per request of the gateway, Redis and the upstream processes
# (/proc/PID/stat), Redis script calls per request (INFO commandstats, eval +
# evalsha), Redis memory left per request (INFO memory used_memory), and the
# gateway's RSS next to plain's. Last, the latency each metered variant adds
# at half load: each variant driven open-loop by bench/rate at half plain's
# median req/s, its p50 and p99, and its p99 less plain's.
. "$(dirname "$0")/lib.sh"
duration=${1:-10s}
conns=${2:-32}
rounds=${3:-3}
accounts=${ACCOUNTS:-1000}
settle=1.5 # seconds after each run: idle leases close after 10 flushes (1s)
clk=$(getconf CLK_TCK)
command -v redis-cli >/dev/null || { echo "bench: redis-cli is missing: apt-get install redis-tools" >&2; exit 1; }
go build -o "$work/rate" ./bench/rate

memory_port=$(free_port); memory_admin=$(free_port)
nolease_port=$(free_port); nolease_admin=$(free_port)
redis_url="redis://127.0.0.1:$redis_port/0"
body=$(head -c 1024 /dev/zero | tr '\0' x)

cat >"$work/upstream.caddy" <<CFG
{
	admin off
}
http://127.0.0.1:$up_port {
	respond "$body"
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
# metered NAME PORT ADMIN STORE [OPTION]: a tollgate 1 config.
metered() {
	local option=
	[ -z "${5:-}" ] || option=$'\n\t\t'"$5"
	cat >"$work/$1.caddy" <<CFG
{
	admin 127.0.0.1:$3
	tollgate {
		store $4$option
		jwt {
			hmac_secret $secret
		}
	}
}
http://127.0.0.1:$2 {
	tollgate 1
	reverse_proxy 127.0.0.1:$up_port
}
CFG
}
metered memory "$memory_port" "$memory_admin" memory "${MEMORY_OPTION:-}"
metered lease "$metered_port" "$metered_admin" "redis $redis_url"
metered nolease "$nolease_port" "$nolease_admin" "redis $redis_url" "lease off"
start upstream plain memory lease nolease

wait_for "http://127.0.0.1:$plain_port/"
for port in "$memory_admin" "$metered_admin" "$nolease_admin"; do wait_for "http://127.0.0.1:$port/config/"; done
[ "$(curl -s "http://127.0.0.1:$plain_port/" | wc -c)" -eq 1024 ] || { echo "bench: the upstream does not answer 1 KiB" >&2; exit 1; }

# The memory gateway has its own store; the two Redis gateways share one.
fund "$memory_admin" "$metered_admin"
echo "$token" >"$work/hot.tokens"
t0=$(date +%s.%N)
fund_many "$accounts" "$work/many.tokens" "$memory_admin" "$metered_admin"
funded=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# Sends the tokens of the file given after -- one per request, round robin,
# each thread starting at its own place; the requests are built once.
cat >"$work/tokens.lua" <<'LUA'
local threads = 0
function setup(thread)
	thread:set("id", threads)
	threads = threads + 1
end
local reqs, n, i = {}, 0, 0
function init(args)
	for line in io.lines(args[1]) do
		if #line > 0 then
			n = n + 1
			reqs[n] = wrk.format(nil, nil, { ["Host"] = wrk.host .. ":" .. wrk.port, ["Authorization"] = "Bearer " .. line })
		end
	end
	i = ((id or 0) * 7919) % n
end
function request()
	i = i % n + 1
	return reqs[i]
end
LUA

names=(plain memory redis-lease redis-nolease)
ports=("$plain_port" "$memory_port" "$metered_port" "$nolease_port")
gpids=("$pid_plain" "$pid_memory" "$pid_lease" "$pid_nolease")
logs=(plain memory lease nolease)
workloads=(hot many)

# ticks PID: the CPU time (user + system) of the process, in clock ticks.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# evals: the Redis script calls so far (eval and evalsha, _ro too).
evals() { redis-cli -p "$redis_port" INFO commandstats | awk -F'[:=,]' '/^cmdstat_eval(sha)?(_ro)?:/ { s += $3 } END { print s + 0 }'; }
# used_memory: Redis's used_memory, and that less its client and AOF
# buffers (which grow and shrink with the load, not with what is stored), in
# bytes.
used_memory() {
	redis-cli -p "$redis_port" INFO memory | awk -F: '{ v[$1] = $2 + 0 }
		END { print v["used_memory"], v["used_memory"] - v["mem_clients_normal"] - v["mem_aof_buffer"] }'
}
# ms VALUE: a wrk latency (123.45us, 1.23ms, 1.02s, 1.00m) in ms.
ms() { awk -v v="$1" 'BEGIN { u = v; sub(/^[0-9.]+/, "", u); x = v + 0
	printf "%.3f", (u == "us" ? x / 1000 : u == "ms" ? x : u == "s" ? x * 1000 : u == "m" ? x * 60000 : x) }'; }

# logged I LINE: what the gateway of variant I logged above info level after
# line LINE of its log (count, level, message), on standard error.
logged() {
	echo "  what the gateway logged above info level meanwhile (count, level, message):" >&2
	tail -n +"$(($2 + 1))" "$work/${logs[$1]}.log" | grep -v '"level":"info"' |
		sed -n 's/.*"level":"\([a-z]*\)".*"msg":"\([^"]*\)".*/\1 \2/p' | sort | uniq -c | sort -rn | head -5 | sed 's/^/  /' >&2 || true
}

# measure PHASE WORKLOAD I ROUND: one wrk run of variant I, with the
# processes' CPU, Redis's script calls and memory read around it (after
# $settle, so that a lease's last flush and its close count). Appends a line
# to $work/results and prints it.
measure() {
	local phase=$1 wl=$2 i=$3 round=$4
	local name=${names[$i]} port=${ports[$i]} gpid=${gpids[$i]}
	local out="$work/$phase-$wl-$name-$round.wrk"
	local g0 r0 u0 e0 m0 n0 l0
	l0=$(wc -l <"$work/${logs[$i]}.log")
	g0=$(ticks "$gpid"); r0=$(ticks "$redis_pid"); u0=$(ticks "$pid_upstream"); e0=$(evals); read -r m0 n0 < <(used_memory)
	wrk -t2 -c"$conns" -d"$duration" --latency -s "$work/tokens.lua" "http://127.0.0.1:$port/" -- "$work/$wl.tokens" >"$out"
	sleep "$settle"
	local g r u e m n rss
	g=$(( $(ticks "$gpid") - g0 )); r=$(( $(ticks "$redis_pid") - r0 )); u=$(( $(ticks "$pid_upstream") - u0 ))
	e=$(( $(evals) - e0 )); read -r m n < <(used_memory); m=$(( m - m0 )); n=$(( n - n0 ))
	rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$gpid/status")
	local rps reqs bad p50 p99
	rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
	reqs=$(awk '/ requests in / { print $1 }' "$out")
	bad=$(awk '/Non-2xx/ { print $NF }' "$out"); bad=${bad:-0}
	p50=$(ms "$(awk '$1 == "50%" || $1 == "50.000%" { print $2; exit }' "$out")")
	p99=$(ms "$(awk '$1 == "99%" || $1 == "99.000%" { print $2; exit }' "$out")")
	if grep -q "Non-2xx\|Socket errors" "$out"; then
		echo "bench: $phase $wl $name had errors:" >&2
		grep "Non-2xx\|Socket errors" "$out" >&2
		logged "$i" "$l0"
	fi
	echo "$phase $wl $name $round $rps $p50 $p99 $reqs $bad $g $r $u $e $m $n $rss" >>"$work/results"
	awk -v clk="$clk" -v w="$wl" -v v="$name" -v rd="$round" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v q="$reqs" \
		-v g="$g" -v r="$r" -v u="$u" -v e="$e" -v m="$m" -v n="$n" -v rss="$rss" 'BEGIN {
		t = 1e6 / clk / q
		printf "%-4s %-13s %2s %6.0f req/s p50 %5.2fms p99 %6.2fms | cpu us/req gw %5.1f redis %5.1f up %5.1f | evals/req %5.3f | redis B/req %6.1f (net %6.1f) | RSS %5.1f MiB\n",
			w, v, rd, rps, p50, p99, g * t, r * t, u * t, e / q, m / q, n / q, rss / 1024 }'
}

echo "tollgate lease bench: $rounds round(s) of $duration, $conns connections, wrk -t2, on $(nproc) cores"
echo "upstream: respond of a 1 KiB body; every gateway proxies to it; price 1 token a request"
echo "workloads: hot = 1 account (1 token); many = $accounts accounts (wrk Lua, round robin over $accounts tokens)"
echo "funded: 1 + $accounts accounts with 10^12 tokens each on the memory and the Redis stores in ${funded}s"
echo "CPU from /proc/PID/stat utime+stime (CLK_TCK $clk); Redis figures from INFO; each run read from before it to ${settle}s after it"
echo

# Warm every variant up on both workloads (token caches, connections,
# leases), then alternate.
for wl in "${workloads[@]}"; do
	for i in "${!names[@]}"; do
		wrk -t1 -c4 -d1s -s "$work/tokens.lua" "http://127.0.0.1:${ports[$i]}/" -- "$work/$wl.tokens" >/dev/null
	done
done
sleep "$settle"

: >"$work/results"
echo "== runs ($conns connections)"
for round in $(seq "$rounds"); do
	for wl in "${workloads[@]}"; do
		for i in "${!names[@]}"; do
			measure main "$wl" "$i" "$round"
		done
	done
done

# summary PHASE: per workload, each variant's figures over its runs.
summary() {
	awk -v phase="$1" -v clk="$clk" -v order="${names[*]}" -v wls="${workloads[*]}" '
	function median(k, c,   a, i, j, t) {
		for (i = 1; i <= c; i++) a[i] = rps[k, i]
		for (i = 2; i <= c; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		lo = a[1]; hi = a[c]
		return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
	}
	function medp99(k, c,   a, i, j, t) {
		for (i = 1; i <= c; i++) a[i] = p99[k, i]
		for (i = 2; i <= c; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
	}
	$1 == phase {
		k = $2 SUBSEP $3
		c = ++n[k]; rps[k, c] = $5; p99[k, c] = $7
		req[k] += $8; bad[k] += $9; gw[k] += $10; rd[k] += $11; up[k] += $12; ev[k] += $13; mem[k] += $14; net[k] += $15; rss[k] = $16
	}
	END {
		nv = split(order, v, " "); nw = split(wls, w, " ")
		for (a = 1; a <= nw; a++) {
			pk = w[a] SUBSEP v[1]
			if (!n[pk]) continue
			pmed = median(pk, n[pk]); prss = rss[pk]
			printf "\n%s: %s\n", w[a], (w[a] == "hot" ? "one account" : "many accounts")
			printf "%-13s %7s %-13s %7s %7s %8s %8s %8s %8s %8s %8s %8s %8s\n", "variant", "req/s", " min-max", "x plain", "p99 ms",
				"gw us/r", "redis us", "up us/r", "evals/r", "mem B/r", "net B/r", "RSS MiB", "vs plain"
			for (b = 1; b <= nv; b++) {
				k = w[a] SUBSEP v[b]
				if (!n[k]) continue
				med = median(k, n[k]); t = 1e6 / clk / req[k]
				printf "%-13s %7.0f %-13s %7.3f %7.2f %8.1f %8.1f %8.1f %8.3f %8.1f %8.1f %8.1f %+8.1f\n", v[b], med, sprintf(" %.0f-%.0f", lo, hi),
					med / pmed, medp99(k, n[k]), gw[k] * t, rd[k] * t, up[k] * t, ev[k] / req[k], mem[k] / req[k], net[k] / req[k],
					rss[k] / 1024, (rss[k] - prss) / 1024
				if (bad[k]) printf "%-13s   %d non-2xx answers\n", "", bad[k]
			}
		}
	}' "$work/results"
}

echo
echo "== summary: median of $rounds round(s) of $duration at $conns connections; spread min-max; x plain = median / plain's median;"
echo "   p99 = median of the rounds' p99; per request over all rounds: CPU us of the gateway, Redis and upstream processes, evals"
echo "   (Redis eval+evalsha calls), mem B = growth of Redis used_memory, net B = the same less client and AOF buffers (what stays);"
echo "   RSS = the gateway's VmRSS after its last run (plain's is plain Caddy's), and its difference to plain's"
summary main

# half WORKLOAD I RATE: one bench/rate run of variant I, open-loop at RATE
# req/s over at most $conns connections for $duration, then $settle. Appends
# "half WORKLOAD VARIANT 1 req/s p50 p99 sent non-2xx errors unsent" to
# $work/results, and prints the variant's p50, p99 and p99 less plain's (the
# plain run of the workload goes first).
half() {
	local wl=$1 i=$2 rate=$3
	local name=${names[$i]} out="$work/half-$wl-${names[$i]}.rate" l0
	l0=$(wc -l <"$work/${logs[$i]}.log")
	"$work/rate" -rate "$rate" -d "$duration" -c "$conns" -tokens "$work/$wl.tokens" "http://127.0.0.1:${ports[$i]}/" >"$out" 2>"$out.err" ||
		{ cat "$out.err" >&2; exit 1; }
	sleep "$settle"
	local got rps p50 p99 sent bad errs unsent plain
	# Its line is "rate R sent N non2xx N … p50 Xms …": each name, then its value.
	got=$(awk '{ for (k = 1; k < NF; k += 2) { v = $(k + 1); sub(/ms$/, "", v); f[$k] = v }
		print f["rate"], f["p50"], f["p99"], f["sent"], f["non2xx"], f["errors"], f["unsent"] }' "$out")
	read -r rps p50 p99 sent bad errs unsent <<<"$got"
	if [ $((bad + errs + unsent)) -gt 0 ]; then
		echo "bench: half $wl $name had $bad non-2xx answers, $errs errors and $unsent requests left unsent" >&2
		cat "$out.err" >&2
		logged "$i" "$l0"
	fi
	echo "half $wl $name 1 $rps $p50 $p99 $sent $bad $errs $unsent" >>"$work/results"
	plain=$(awk -v w="$wl" '$1 == "half" && $2 == w && $3 == "plain" { print $7 }' "$work/results")
	awk -v w="$wl" -v v="$name" -v r="$rate" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v plain="$plain" -v s="$sent" -v b="$bad" -v e="$errs" -v u="$unsent" 'BEGIN {
		printf "%-4s %-13s %7d %9.1f %8.3f %8.3f %+13.3f", w, v, r, rps, p50, p99, p99 - plain
		if (b + e + u) printf "   of %d sent: %d non-2xx, %d errors; %d unsent", s, b, e, u
		printf "\n" }'
}

echo
echo "== p99 added latency at half load: bench/rate sends open-loop at half of plain's median req/s above, over at most $conns"
echo "   connections, $duration, one run each; each request's latency counts from when it was due (coordinated omission"
echo "   corrected), so a variant that falls behind shows it; target = the rate asked, req/s = the rate sent; p99 - plain's in ms"
printf '%-4s %-13s %7s %9s %8s %8s %13s\n' "" variant "target" "req/s" "p50 ms" "p99 ms" "p99 - plain's"
for wl in "${workloads[@]}"; do
	rate=$(awk -v w="$wl" '$1 == "main" && $2 == w && $3 == "plain" { print $5 }' "$work/results" | sort -n |
		awk '{ a[NR] = $1 } END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%d", m / 2 }')
	for i in "${!names[@]}"; do
		half "$wl" "$i" "$rate"
	done
done

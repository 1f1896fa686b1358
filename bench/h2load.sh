#!/usr/bin/env bash
# The no-op gRPC ceiling cross-checked with an independent HTTP/2 load tool (issue 10): h2load
# (Debian's nghttp2-client) posts framed gRPC bodies to `loadgen serve-grpc`, at the in-flight
# counts of bench/run.sh's ceilings, and the server's own CPU per call is read from /proc.
#
#   bench/h2load.sh
#
# Knobs (env): DUR (s per run, 10), REPEAT (1), INFLIGHT ("64 500": streams in flight in all,
# spread over CONNS connections, 4 like loadgen's default --connections), PORT / COUNT_PORT
# (19565 / 19566: the no-op server's gRPC port and its call counter), OUT (results dir; the
# figures are appended to $OUT/results.jsonl), LG (the loadgen binary), H2LOAD_INSTALL (1: apt-get
# install nghttp2-client if h2load is missing and we are root; 0: fail instead).
#
# h2load counts any HTTP 2xx as a success, but a gRPC error is HTTP 200 too (its status is in the
# trailers), so every run is also checked against the server's own count of calls it answered
# (`serve-grpc --count-port`): a run whose counts disagree by more than what was in flight when
# h2load stopped, or where h2load saw any failure, is reported as INVALID and the script exits 1.
# Loopback only; the server exits after its --lifetime, every h2load run is bounded by -D.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG=${LG:-$ROOT/target/release/loadgen}
DUR=${DUR:-10}
REPEAT=${REPEAT:-1}
INFLIGHT=${INFLIGHT:-64 500}
CONNS=${CONNS:-4}
PORT=${PORT:-19565}
COUNT_PORT=${COUNT_PORT:-19566}
OUT=${OUT:-$ROOT/target/bench-results/h2load-$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }

if ! command -v h2load >/dev/null; then
  if [ "${H2LOAD_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing nghttp2-client (h2load)"
    apt-get install -y -qq nghttp2-client >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
  else
    log "h2load is not installed (apt-get install nghttp2-client)"; exit 2
  fi
fi
[ -x "$LG" ] || { log "no $LG: cargo build --release -p loadgen"; exit 2; }

for p in "$PORT" "$COUNT_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p already in use"; exit 1; fi
done

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; } # utime+stime, 1/100 s
calls() { curl -sf "http://127.0.0.1:$COUNT_PORT/calls" | jq '.login + .stat'; }

# The request body: the bytes loadgen sends for a stat event (flag 0, length, StatItemUpdated).
BODY="$OUT/grpc-stat-event.bin"
"$LG" grpc-body --out "$BODY" >&2

lifetime=$(( (DUR + 5) * REPEAT * $(wc -w <<< "$INFLIGHT") + 30 ))
"$LG" serve-grpc --port "$PORT" --count-port "$COUNT_PORT" --lifetime "$lifetime" > "$OUT/serve-grpc-h2load.log" 2>&1 &
SP=$!
trap 'kill -TERM $SP 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$COUNT_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

URL="http://127.0.0.1:$PORT/accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage"
invalid=0
for inflight in $INFLIGHT; do
  streams=$(( (inflight + CONNS - 1) / CONNS ))
  for rep in $(seq 1 "$REPEAT"); do
    label="ceiling: tonic no-op OnMessage (h2load, $inflight in flight)"
    log "$label: h2load -c $CONNS -m $streams -D $DUR (repeat $rep/$REPEAT)"
    n0=$(calls); c0=$(cpu_ticks $SP)
    TIMEFORMAT='%U %S'
    { time h2load -c "$CONNS" -m "$streams" -D "$DUR" -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$BODY" "$URL" > "$OUT/h2load-$inflight-r$rep.txt" 2>&1 || true; } 2> "$OUT/h2load-$inflight-r$rep.time"
    c1=$(cpu_ticks $SP); n1=$(calls)
    cat "$OUT/h2load-$inflight-r$rep.txt" >&2
    read -r h_user h_sys < "$OUT/h2load-$inflight-r$rep.time"
    f="$OUT/h2load-$inflight-r$rep.txt"
    rps=$(sed -nE 's/^finished in [0-9.]+s, ([0-9.]+) req\/s.*/\1/p' "$f")
    read -r total done ok failed errored timeout < <(sed -nE \
      's/^requests: ([0-9]+) total, [0-9]+ started, ([0-9]+) done, ([0-9]+) succeeded, ([0-9]+) failed, ([0-9]+) errored, ([0-9]+) timeout.*/\1 \2 \3 \4 \5 \6/p' "$f")
    served=$((n1 - n0))
    valid=true
    if [ -z "$rps" ] || [ "${ok:-0}" -eq 0 ] || [ "$failed" -ne 0 ] || [ "$errored" -ne 0 ] || [ "$timeout" -ne 0 ] ||
       [ "$served" -lt "$ok" ] || [ "$served" -gt $((ok + inflight)) ]; then
      valid=false; invalid=1
      log "INVALID: h2load succeeded=$ok failed=$failed errored=$errored, server answered $served"
    fi
    jq -cn --arg s "$label" --argjson inflight "$inflight" --argjson conns "$CONNS" --argjson streams "$streams" \
      --argjson dur "$DUR" --argjson rep "$rep" --argjson rps "${rps:-0}" --argjson ok "${ok:-0}" \
      --argjson failed "${failed:-0}" --argjson errored "${errored:-0}" --argjson served "$served" \
      --argjson sc "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print (b - a) / 100 }')" \
      --argjson hc "$(awk -v u="$h_user" -v s="$h_sys" 'BEGIN { print u + s }')" --argjson valid "$valid" \
      '{kind:"h2load", scenario:$s, in_flight:$inflight, connections:$conns, streams_per_connection:$streams,
        duration_s:$dur, repeat:$rep, req_per_s:$rps, h2load_succeeded:$ok, h2load_failed:$failed,
        h2load_errored:$errored, server_calls_answered:$served, valid:$valid,
        server_cpu_s:$sc, server_cpu_us_per_call:(if $served > 0 then $sc * 1e6 / $served else null end),
        h2load_cpu_s:$hc, h2load_cpu_us_per_call:(if $ok > 0 then $hc * 1e6 / $ok else null end)}' |
      tee -a "$RESULTS" >&2
  done
done
log "results: $RESULTS"
exit $invalid

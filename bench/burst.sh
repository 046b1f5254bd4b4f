#!/usr/bin/env bash
# Upload burst: N uploads, C at a time, with a real HTTP load tool (hey)
# against a release node on loopback. Prints requests sent, accepted,
# rejected with Retry-After, lost (accepted but not in the database: must
# be 0), p50/p99 accept latency, the node's peak RSS, and a `cat`-to-disk
# baseline of the same bytes measured in the same run.
#
#   bench/burst.sh [N] [C]        (defaults: 400 uploads, 200 at a time)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400}
C=${2:-200}
command -v hey >/dev/null || { echo "installing hey"; apt-get install -y -qq hey >/dev/null; }
scripts/deps >/dev/null
cargo build --release --locked --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/videoproject

WORK=$(mktemp -d /tmp/vp-bench-XXXX)
DB="vp_bench_$(date +%s)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    [ -n "${NODE:-}" ] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null || true
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=320x240:rate=25 -t 10 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$WORK/clip.mp4"
BOUNDARY=vpbenchboundary
{
    printf -- '--%s\r\nContent-Disposition: form-data; name="count"\r\n\r\n1\r\n' "$BOUNDARY"
    printf -- '--%s\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\nContent-Type: video/mp4\r\n\r\n' "$BOUNDARY"
    cat "$WORK/clip.mp4"
    printf -- '\r\n--%s--\r\n' "$BOUNDARY"
} > "$WORK/body"
BYTES=$(stat -c %s "$WORK/body")

printf '[tuning]\nmax_queued_per_user = 100000\nmax_uploads_per_user = 100000\n' > "$WORK/node.toml"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" VP_HTTP_ADDR="127.0.0.1:$PORT" \
VP_MEDIA_URL="file://$WORK/media" VP_NODE_NAME=bench VP_LOG_FORMAT=json VP_CONFIG="$WORK/node.toml" \
    "$BIN" serve 2>"$WORK/node.log" &
NODE=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "node did not start:"; cat "$WORK/node.log"; exit 1; }
B="http://127.0.0.1:$PORT/api/v1"
curl -sf -X POST "$B/users" -d '{"email":"bench@example.com","password":"benchmark-pass"}' >/dev/null
TOKEN=$(curl -sf -X POST "$B/sessions" -d '{"email":"bench@example.com","password":"benchmark-pass"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
rss() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$NODE/status"; }
RSS_BEFORE=$(rss)

# baseline: the same bytes written to disk N times by cat, C at a time
START=$(date +%s.%N)
seq 1 "$N" | xargs -P "$C" -I{} sh -c "cat '$WORK/body' > '$WORK/cat-{}' && sync -f '$WORK/cat-{}'"
CAT_SECS=$(echo "$(date +%s.%N) - $START" | bc)
rm -f "$WORK"/cat-*

START=$(date +%s.%N)
hey -n "$N" -c "$C" -t 120 -m POST -H "Authorization: Bearer $TOKEN" \
    -T "multipart/form-data; boundary=$BOUNDARY" -D "$WORK/body" "$B/videos" > "$WORK/hey.txt"
HEY_SECS=$(echo "$(date +%s.%N) - $START" | bc)
RSS_AFTER=$(rss)

code() { awk -v c="[$1]" '$1 == c {print $2}' "$WORK/hey.txt" | head -n 1; }
ACCEPTED=$(code 202); ACCEPTED=${ACCEPTED:-0}
R503=$(code 503); R503=${R503:-0}
R429=$(code 429); R429=${R429:-0}
OTHER=$(awk '/Status code distribution/ {f=1; next} f && /\[/ {gsub(/[\[\]]/,"",$1); if ($1!="202" && $1!="503" && $1!="429") s+=$2} END {print s+0}' "$WORK/hey.txt")
ERRORS=$(awk '/Error distribution/ {f=1; next} f && /\[/ {gsub(/[\[\]]/,"",$1); s+=$1} END {print s+0}' "$WORK/hey.txt")
ROWS=$(psql -tA -h 127.0.0.1 -U postgres -d "$DB" -c "SELECT count(*) FROM jobs WHERE state <> 'uploading'")
P50=$(awk '/ 50% in/ {print $3}' "$WORK/hey.txt"); P99=$(awk '/ 99% in/ {print $3}' "$WORK/hey.txt")
LOST=$((ACCEPTED - ROWS))

cat <<OUT
burst: $N uploads of $((BYTES / 1024)) KiB, $C at a time, one node (release)
  accepted (202)             $ACCEPTED
  rejected 503/429 + Retry   $R503 / $R429
  other statuses, errors     $OTHER, $ERRORS
  jobs in the database       $ROWS
  lost                       $LOST
  accept latency p50 / p99   ${P50:-?} s / ${P99:-?} s
  node peak RSS              ${RSS_BEFORE} MiB before, ${RSS_AFTER} MiB after
  wall time                  ${HEY_SECS} s (cat to disk, same bytes: ${CAT_SECS} s, ratio $(echo "scale=2; $HEY_SECS / $CAT_SECS" | bc))
OUT
if [ "$OTHER" -ne 0 ] || [ "$ERRORS" -ne 0 ]; then
    sed -n '/Status code distribution/,$p' "$WORK/hey.txt"
    grep -E '"level":"(ERROR|WARN)"' "$WORK/node.log" | head -n 20 || true
fi
[ "$LOST" -eq 0 ] && [ "$OTHER" -eq 0 ] && [ "$ERRORS" -eq 0 ]

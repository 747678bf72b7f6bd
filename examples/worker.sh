#!/bin/sh
# A worker in any language, here a shell loop: it touches its heartbeat file once per
# turn, and the sidecar's file-age check (sidecar.toml) fails once the loop stops turning.
heartbeat=${HEARTBEAT:-data/worker.heartbeat}
mkdir -p "$(dirname "$heartbeat")"
while :; do
    # ... one unit of work: a queue read, a batch, a sync ...
    touch "$heartbeat"
    sleep 5
done

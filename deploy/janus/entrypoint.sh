#!/bin/sh
# Fill the secret, the public address and the RTP ports into the configuration, then run Janus.
set -eu
: "${JANUS_SECRET:?set JANUS_SECRET (the receivers' TELEPRESENCE_JANUS_SECRET)}"
: "${PUBLIC_HOST:?set PUBLIC_HOST (the address viewers reach this machine at)}"
RTP_PORTS="${JANUS_RTP_PORTS:-20000-20999}"
HTTP_PORT="${JANUS_HTTP_PORT:-8088}"
TEMPLATES="${JANUS_CONFIG_TEMPLATES:-/etc/telepresence-janus}"
config=$(mktemp -d)
for file in "${TEMPLATES}"/*.jcfg; do
    sed -e "s|@SECRET@|${JANUS_SECRET}|g" -e "s|@PUBLIC_HOST@|${PUBLIC_HOST}|g" \
        -e "s|@RTP_PORTS@|${RTP_PORTS}|g" -e "s|@HTTP_PORT@|${HTTP_PORT}|g" \
        -e "s|@CONFIG@|${config}|g" "$file" > "${config}/$(basename "$file")"
done
exec janus -C "${config}/janus.jcfg" -F "${config}" -o

#!/bin/sh
# `npm run proto`: TypeScript for the .proto files, generated only when it is
# missing or older than what it is made from (a .proto file, buf's settings,
# ts-proto): buf runs ts-proto under Node, seconds an up-to-date build need not
# spend. The stamp marks the last generation. PROTO_FORCE=1 generates anyway.
set -e
stamp=proto/generated/.stamp
if [ -z "$PROTO_FORCE" ] && [ -f "$stamp" ] && [ -z "$(find proto -name '*.proto' -newer "$stamp")" ] \
	&& [ -z "$(find buf.gen.yaml buf.yaml node_modules/ts-proto/package.json -newer "$stamp")" ]; then
	exit 0
fi
buf generate
touch "$stamp"

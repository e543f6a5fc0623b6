#!/usr/bin/env bash
# HAPI FHIR's instance validator, offline, against the official R4 base
# profiles: fetched from Maven Central with the machine's Maven, compiled and
# run with Java 17+, cached under ${DATA_DIR:-.data}/fhir-validator.
#
#   scripts/fhir-validator.sh build      fetch and compile it, unless already done
#   scripts/fhir-validator.sh validate   one JSON resource per line on stdin; one
#                                        OperationOutcome per line on stdout, in order
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
data_dir="$(cd "$root" && mkdir -p "${DATA_DIR:-.data}" && cd "${DATA_DIR:-.data}" && pwd)"
dir="$data_dir/fhir-validator"
source_file="$root/scripts/fhir-validator/src/ValidateResources.java"

build() {
	command -v java >/dev/null || { echo "Java 17 or later is needed to run the FHIR validator" >&2; return 1; }
	if [ ! -f "$dir/libs/.complete" ]; then
		command -v mvn >/dev/null || { echo "Maven is needed to fetch the FHIR validator" >&2; return 1; }
		echo "Fetching HAPI FHIR's validator from Maven Central into $dir/libs ..." >&2
		rm -rf "$dir/libs"
		mkdir -p "$dir"
		mvn -q -B -Dstyle.color=never -f "$root/scripts/fhir-validator/pom.xml" dependency:copy-dependencies \
			-DoutputDirectory="$dir/libs" -DincludeScope=runtime >&2
		touch "$dir/libs/.complete"
	fi
	# Compiled again whenever the source changes: the stamp is its checksum.
	local stamp
	stamp="$(sha256sum "$source_file" | cut -d' ' -f1)"
	if [ "$(cat "$dir/classes/.source" 2>/dev/null)" != "$stamp" ]; then
		rm -rf "$dir/classes"
		mkdir -p "$dir/classes"
		javac -nowarn -d "$dir/classes" -cp "$dir/libs/*" "$source_file" >&2
		echo "$stamp" > "$dir/classes/.source"
	fi
}

case "${1:-}" in
	build) build ;;
	validate)
		build
		exec java -Xms256m -Xmx1g -XX:+UseSerialGC -cp "$dir/classes:$dir/libs/*" ValidateResources
		;;
	*) echo "usage: $0 build|validate" >&2; exit 2 ;;
esac

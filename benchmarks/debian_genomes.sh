#!/usr/bin/env bash
# Public genomes that Debian's own packages carry, for `neuromap train --genome` (a training-time
# download; neuromap itself never fetches anything):
#   bowtie2-examples: the lambda phage genome (48,502 bp), lambda_virus.fa
#   minimap2:         the human and orangutan mitochondrial genomes (16.6 and 16.5 kb), MT-*.fa
# The packages are downloaded with `apt-get download` (no root, nothing installed) and unpacked
# with dpkg-deb into a temporary folder; the FASTA files land, uncompressed, in DIR.
#
#   bash benchmarks/debian_genomes.sh [DIR]     # default: benchmarks/work/genomes
set -euo pipefail
DIR=${1:-$(dirname "$0")/work/genomes}
mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && apt-get download bowtie2-examples minimap2 >/dev/null)
for deb in "$TMP"/*.deb; do dpkg-deb -x "$deb" "$TMP/root"; done
gunzip -c "$TMP"/root/usr/share/doc/bowtie2/examples/reference/lambda_virus.fa.gz > "$DIR/lambda_virus.fa"
gunzip -c "$TMP"/root/usr/share/doc/minimap2/test/MT-human.fa.gz > "$DIR/MT-human.fa"
gunzip -c "$TMP"/root/usr/share/doc/minimap2/test/MT-orang.fa.gz > "$DIR/MT-orang.fa"
for fa in "$DIR"/lambda_virus.fa "$DIR"/MT-human.fa "$DIR"/MT-orang.fa; do
    echo "$fa: $(grep -v '^>' "$fa" | tr -d '\n' | wc -c) bp"
done

#!/usr/bin/env bash
# Bundle the PostgreSQL client tools (pg_dump, pg_restore, psql), libpq and every shared library
# they load into pgtools/ of the deployment package, for plans that cannot install packages
# (Flex Consumption). Set PGVAULT_PG_BIN_DIR=/home/site/wwwroot/pgtools/bin (the template does).
#
#   infra/bundle-pg-tools.sh [SOURCE_BIN_DIR] [DEST]
#     SOURCE_BIN_DIR  default: the newest /usr/lib/postgresql/<major>/bin (use 17: it dumps 9.2..17)
#     DEST            default: ./pgtools
#
# Run it on the same Linux as the Functions host, so the system C library matches: inside
# mcr.microsoft.com/azure-functions/python:4-python3.11 with postgresql-client-17 from
# apt.postgresql.org (see DEPLOY.md). glibc itself (libc, libm, ld-linux, ...) is not bundled:
# it must come from the host. Everything else ldd names is copied.
#
# Layout: pgtools/libexec/<tool> is the real binary, pgtools/lib/ its libraries, and
# pgtools/bin/<tool> a small /bin/sh wrapper that sets LD_LIBRARY_PATH and execs it. The wrapper
# uses no external command and needs no PATH: pgvault runs pg_dump with a minimal environment.
set -euo pipefail

src="${1:-}"
dest="${2:-pgtools}"
if [ -z "$src" ]; then
  src="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
fi
if [ -z "$src" ] || [ ! -x "$src/pg_dump" ]; then
  echo "no pg_dump in '${src:-/usr/lib/postgresql/*/bin}': install postgresql-client-17 or pass its bin folder" >&2
  exit 2
fi

tools=(pg_dump pg_restore psql)
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/libexec" "$dest/lib"

for tool in "${tools[@]}"; do
  cp -L "$src/$tool" "$dest/libexec/$tool"
  chmod 0755 "$dest/libexec/$tool"
done

# Every library the tools load, resolved by the dynamic loader (ldd), minus glibc's own.
for tool in "${tools[@]}"; do
  ldd "$dest/libexec/$tool"
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*|libutil.so.*|ld-linux*) ;;
    *) cp -L "$lib" "$dest/lib/" ;;
  esac
done

for tool in "${tools[@]}"; do
  cat > "$dest/bin/$tool" <<WRAPPER
#!/bin/sh
# pgvault: run the bundled $tool with the bundled libraries (see infra/bundle-pg-tools.sh).
here="\${0%/*}"
LD_LIBRARY_PATH="\$here/../lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "\$here/../libexec/$tool" "\$@"
WRAPPER
  chmod 0755 "$dest/bin/$tool"
done

# The check a user (and the test) relies on: the bundle runs with an empty environment.
version="$(env -i "$dest/bin/pg_dump" --version)"
echo "bundled into $dest: $version ($(ls "$dest/lib" | wc -l) libraries)"

#!/bin/sh
# `npm run package`: builds dist/virt-cohort_VERSION_ARCH.deb with dpkg-deb from
# this checkout, downloading nothing. The production node_modules is a pruned
# copy of the checkout's (its native addons as built here by `npm run setup`).
set -eu

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SRC=src/package
say() { echo "package: $*"; }
die() { echo "package: error: $*" >&2; exit 1; }

VERSION=$(node -p 'require("./package.json").version')
ARCH=$(dpkg --print-architecture)
[ "$ARCH" = amd64 ] || die "the native addons are built for this machine ($ARCH); this package is amd64 only: build it on amd64"
OUT="$ROOT/dist/virt-cohort_${VERSION}_${ARCH}.deb"
# The documented default configuration, shipped as /etc/virt-cohort/config.yaml.
CONFIG=${VIRT_COHORT_PACKAGE_CONFIG:-src/config/default.yaml}
[ -f "$CONFIG" ] || die "$CONFIG is missing: the package ships it as /etc/virt-cohort/config.yaml (it is written with the configuration schema, issue 7 item 3); create it, or point VIRT_COHORT_PACKAGE_CONFIG at a file"
for tool in dpkg-deb dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install dpkg-dev binutils (or npm run setup)"
done
[ -d node_modules ] || die "node_modules is missing: run npm run setup first"

say "building TypeScript"
# The project compiles src/ and test/ together; only errors in src/ concern the package.
if ! TSC=$(npx --no-install tsc -p . 2>&1); then
  if echo "$TSC" | grep -q '^src/'; then
    echo "$TSC" | grep '^src/' >&2
    die "tsc failed on the program: fix the errors above, the package holds the compiled program"
  fi
  echo "$TSC" | grep -c '^test/' | xargs printf 'package: warning: tsc reported %s error(s) in test/ only (not packaged)\n' >&2
fi
# make rebuilds the BPF objects only when their sources changed.
say "building the BPF objects"
make -s -C bpf OUT="$ROOT/dist/bpf"
# The fallback sensor's libpcap reader (make rebuilds it only when pcap.c changed).
make -s -C src/sensor/native OUT="$ROOT/dist/native"

WORK=$(mktemp -d /tmp/virt-cohort-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
P="$WORK/root"
LIB="$P/usr/lib/virt-cohort"
mkdir -p "$LIB/dist/bpf" "$LIB/dist/native" "$LIB/libexec" "$P/usr/bin" "$P/etc/virt-cohort" "$P/etc/libvirt/hooks/qemu.d" \
  "$P/lib/systemd/system" "$P/usr/share/doc/virt-cohort" "$P/usr/share/man/man1" "$P/DEBIAN"

say "staging the program"
# packageRoot (src/paths.ts) is two levels above dist/src: keep the checkout's layout.
cp -r dist/src "$LIB/dist/"
find "$LIB/dist/src" -type f ! -name '*.js' -delete
# The lab and the demo that runs on it are not what a host runs: the commands
# load them only where they exist (src/cli/labs.ts; test/unit/layers.test.ts
# checks that nothing else loads them).
LAB_ONLY="lab demo cli/lab.js cli/demo.js"
for p in $LAB_ONLY; do rm -rf "${LIB:?}/dist/src/$p"; done
chmod 0755 "$LIB/dist/src/cli/main.js"
cp dist/bpf/counter.bpf.o "$LIB/dist/bpf/"
install -m 0644 dist/native/vc_pcap.node "$LIB/dist/native/"
cp package.json "$LIB/"
cp -r hooks "$LIB/"
install -m 0755 "$SRC/preflight.sh" "$LIB/libexec/preflight"

say "staging the production node_modules (pruned copy, offline)"
NPM="$WORK/npm"
mkdir -p "$NPM"
cp package.json package-lock.json "$NPM/"
# The contents, also when node_modules is a link (a git worktree sharing a
# checkout's): prune must never touch the original.
mkdir "$NPM/node_modules"
cp -a node_modules/. "$NPM/node_modules/"
(cd "$NPM" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
  || die "npm prune failed: run npm ci (npm run setup) so that node_modules matches package-lock.json"
M="$NPM/node_modules"
# @unraid/libvirt lists tsx (and so esbuild, a 10 MB static binary) and
# node-pre-gyp as dependencies, but only its install script and tests use them:
# its dist never loads them (the smoke test below imports it without them).
rm -rf "$M/tsx" "$M/esbuild" "$M/@esbuild" "$M/.bin" "$M/.virt-cohort-lock"
# Prebuilt bpf addons for other architectures, and build leftovers of the addons.
find "$M/bpf/prebuilds" -mindepth 1 -maxdepth 1 ! -name "linux-x64" -exec rm -rf {} +
for addon in @unraid/libvirt; do
  ls "$M/$addon"/build/Release/*.node >/dev/null 2>&1 || die "$addon has no built addon in node_modules/$addon/build/Release: run npm rebuild $addon"
  find "$M/$addon/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$M/$addon/build/Release" -mindepth 1 -maxdepth 1 ! -name '*.node' -exec rm -rf {} +
done
# Build-time only: the addons' C/C++ sources and vendored libraries (libbpf,
# WinPcap), and the header packages they compile against.
for addon in bpf @unraid/libvirt; do rm -rf "$M/$addon/src" "$M/$addon/deps" "$M/$addon/binding.gyp"; done
find "$M" -type d \( -name node-addon-api -o -name nan -o -name @types \) -prune -exec rm -rf {} +
# Not code: typings, source maps, HTML docs, and the packages' dotfiles
# (.npmignore, .eslintrc, .github ...); npm's own .package-lock.json stays.
find "$M" -mindepth 2 -name '.*' -prune -exec rm -rf {} +
find "$M" -mindepth 2 -maxdepth 3 -type d \( -name test -o -name tests -o -name docs -o -name benchmarks -o -name example -o -name examples \) -prune -exec rm -rf {} +
find "$M" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.html' \) -delete
find "$M" -type d -empty -delete
find "$M" "$LIB/dist/native" -name '*.node' -exec strip --strip-unneeded {} +
# npm tarballs mark all kinds of files executable: only scripts (#!) keep the bit.
find "$M" -type f -exec chmod 0644 {} +
find "$M" -type f ! -name '*.node' -exec sh -c 'for f; do [ "$(head -c 2 "$f")" = "#!" ] && chmod 0755 "$f"; done; true' sh {} +
mv "$M" "$LIB/node_modules"

say "smoke test of the staged tree"
cat > "$LIB/smoke.mjs" <<'EOF'
import { createRequire } from 'node:module';
const pkg = createRequire(import.meta.url)('./package.json');
for (const dep of Object.keys(pkg.dependencies)) await import(dep);
await import('./dist/src/cli/main.js');
EOF
(cd "$WORK" && node "$LIB/smoke.mjs" --version >/dev/null) || die "the staged program does not load (a production dependency is missing?)"
node "$LIB/dist/src/cli/main.js" lab up 2>&1 | grep -q 'not part of this installation' \
  || die "virt-cohort lab does not say that the lab is left out of the package (src/cli/labs.ts)"
rm "$LIB/smoke.mjs"

say "staging files, units and maintainer scripts"
install -m 0755 "$SRC/virt-cohort.sh" "$P/usr/bin/virt-cohort"
install -m 0755 hooks/qemu "$P/etc/libvirt/hooks/qemu.d/virt-cohort"
# 0640: it may hold the Redis password.
install -m 0640 "$CONFIG" "$P/etc/virt-cohort/config.yaml"
install -m 0644 "$SRC/virt-cohort-agent.service" "$SRC/virt-cohort-manager.service" "$P/lib/systemd/system/"
sed "s/@VERSION@/$VERSION/" "$SRC/virt-cohort.1" | gzip -9n > "$P/usr/share/man/man1/virt-cohort.1.gz"
sed -e "s/@VERSION@/$VERSION/" -e "s/@DATE@/$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" "$SRC/changelog" \
  | gzip -9n > "$P/usr/share/doc/virt-cohort/changelog.gz"
{
  echo "virt-cohort $VERSION"
  echo
  cat LICENSE
  echo
  echo "Bundled Node.js modules, in /usr/lib/virt-cohort/node_modules, each with its"
  echo "own licence text in its directory:"
  echo
  node -e '
    const fs = require("fs"), path = require("path");
    const out = [];
    const walk = (dir) => {
      for (const name of fs.readdirSync(dir).sort()) {
        const d = path.join(dir, name);
        if (name.startsWith("@")) { walk(d); continue; }
        const f = path.join(d, "package.json");
        if (!fs.existsSync(f)) continue;
        const p = JSON.parse(fs.readFileSync(f, "utf8"));
        out.push(`  ${p.name} ${p.version}: ${typeof p.license === "string" ? p.license : "see its directory"}`);
        if (fs.existsSync(path.join(d, "node_modules"))) walk(path.join(d, "node_modules"));
      }
    };
    walk(process.argv[1]);
    console.log([...new Set(out)].join("\n"));
  ' "$LIB/node_modules" | tee "$WORK/licences"
  if grep -q ': Apache-2.0$' "$WORK/licences"; then
    echo
    echo "On Debian systems, the complete text of the Apache License 2.0 can be found"
    echo "in /usr/share/common-licenses/Apache-2.0."
  fi
} > "$P/usr/share/doc/virt-cohort/copyright"
install -D -m 0644 "$SRC/lintian-overrides" "$P/usr/share/lintian/overrides/virt-cohort"
printf '/etc/virt-cohort/config.yaml\n/etc/libvirt/hooks/qemu.d/virt-cohort\n' > "$P/DEBIAN/conffiles"
install -m 0755 "$SRC/postinst" "$SRC/prerm" "$SRC/postrm" "$P/DEBIAN/"

# Modes as dpkg expects them, whatever the checkout's umask or npm left.
chmod -R u+rwX,go+rX,go-w "$P"
chmod 0640 "$P/etc/virt-cohort/config.yaml"

# Library dependencies of the native addons (libc6, libstdc++6, libvirt0, libpcap0.8, ...).
mkdir -p "$WORK/shlibs/debian"
printf 'Source: virt-cohort\n\nPackage: virt-cohort\nArchitecture: any\n' > "$WORK/shlibs/debian/control"
SHLIBS=$(cd "$WORK/shlibs" && find "$LIB/node_modules" "$LIB/dist/native" -name '*.node' -print | sed 's/^/-e/' | xargs dpkg-shlibdeps -O 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || die "dpkg-shlibdeps found no library dependencies for the addons"

# Every addon is Node-API (ABI-stable across Node.js majors): the package asks
# for package.json's engines only.
NODEJS="nodejs (>= $(node -p 'require("./package.json").engines.node.replace(/^>=\s*/, "")'))"

(cd "$P" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$P/DEBIAN/md5sums"
SIZE=$(du -sk --exclude=DEBIAN "$P" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" -e "s/@SHLIBS@/$SHLIBS/" -e "s/@NODEJS@/$NODEJS/" "$SRC/control.in" > "$P/DEBIAN/control"

say "building $OUT"
dpkg-deb --root-owner-group -Zxz --build "$P" "$OUT" >/dev/null
say "done: $OUT ($(du -h "$OUT" | cut -f1), installed $(( SIZE / 1024 )) MB)"

#!/usr/bin/env bash
# Fetch the JavaScript the built book loads into book/_static/vendor/ (git-ignored), from the
# npm registry with `npm pack`, so the book needs no CDN: a reader offline, the published
# pages and tests/test_browser.py all load these copies. _config.yml points Sphinx at them
# (html_static_path, mathjax_path, nb_ipywidgets_js); without them `jupyter-book build -W`
# fails with "html_static_path entry 'book/_static' does not exist".
#
#   mathjax                        3.2.2   Apache-2.0    math (tex-mml-chtml + lazily loaded parts)
#   @jupyter-widgets/html-manager  1.0.6   BSD-3-Clause  renders saved ipywidgets 8 state
#   requirejs                      2.3.7   MIT           AMD loader the widget manager needs
#
# Pinned versions and npm integrity hashes; idempotent (does nothing when up to date).
# Usage: .ci/fetch_js.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=book/_static/vendor
PACKAGES=(
  "mathjax@3.2.2 sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
  "@jupyter-widgets/html-manager@1.0.6 sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ=="
  "requirejs@2.3.7 sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw=="
)
STAMP="$DEST/VERSIONS.txt"
WANT=$(printf '%s\n' "${PACKAGES[@]}")

if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "fetch_js: $DEST is up to date"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_js: npm is needed (apt-get install -y npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
new="$tmp/vendor"
mkdir -p "$new"

for entry in "${PACKAGES[@]}"; do
  spec=${entry% *}
  want=${entry#* }
  # npm checks the tarball against the registry's hash; we also check it against ours.
  got=$(cd "$tmp" && npm pack --json --silent "$spec" |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s)[0];console.log(j.integrity+" "+j.filename)})')
  [[ "${got% *}" == "$want" ]] || { echo "fetch_js: $spec integrity ${got% *} != $want" >&2; exit 1; }
  mkdir -p "$tmp/x" && rm -rf "$tmp/x/package" && tar -xzf "$tmp/${got#* }" -C "$tmp/x"
  pkg="$tmp/x/package"
  case "$spec" in
    mathjax@*)
      # The combined TeX/MathML + CommonHTML bundle Sphinx loads by default, and every
      # directory it loads from lazily (TeX extensions, fonts, menu, a11y, speech rules).
      mkdir -p "$new/mathjax"
      cp -r "$pkg/es5/tex-mml-chtml.js" "$pkg/es5/a11y" "$pkg/es5/adaptors" "$pkg/es5/input" \
            "$pkg/es5/output" "$pkg/es5/sre" "$pkg/es5/ui" "$new/mathjax/"
      cp "$pkg/LICENSE" "$new/mathjax/LICENSE.txt" ;;
    @jupyter-widgets/html-manager@*)
      # embed-amd.js finds its font files next to itself.
      mkdir -p "$new/html-manager"
      cp "$pkg/dist/embed-amd.js" "$new/html-manager/"
      for font in "$pkg"/dist/*.woff "$pkg"/dist/*.woff2 "$pkg"/dist/*.ttf "$pkg"/dist/*.eot "$pkg"/dist/*.svg; do
        cp "$font" "$new/html-manager/"
      done
      cp "$pkg/LICENSE" "$new/html-manager/LICENSE.txt" ;;
    requirejs@*)
      mkdir -p "$new/requirejs"
      cp "$pkg/require.js" "$new/requirejs/"
      printf 'requirejs %s, MIT licence (see the header of require.js)\n' "${spec#*@}" > "$new/requirejs/LICENSE.txt" ;;
  esac
done

printf '%s\n' "$WANT" > "$new/VERSIONS.txt"
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$new" "$DEST"
echo "fetch_js: $(du -sh "$DEST" | cut -f1) in $DEST"

#!/usr/bin/env bash
# Every relative link in README.md and docs/**/*.md names a file or folder
# inside the repository: no link points outside it (../shared) or at a file
# that is not there. Web links (http, https, mailto) and in-page anchors are
# not checked.
cd "$(dirname "$0")/.." || exit 1
source tests/lib.sh
root=$(pwd -P)
while IFS= read -r md; do
    dir=$(dirname "$md")
    # [text](target) and ![alt](target); the target ends at ')' or a space (a title)
    while IFS= read -r target; do
        case "$target" in http://*|https://*|mailto:*|'#'*|'') continue;; esac
        path=${target%%#*}
        full=$(realpath -m "$dir/$path")
        case "$full" in
            "$root"|"$root"/*) ;;
            *) bad "$md links outside the repository: $target"; continue;;
        esac
        if [ -e "$full" ]; then ok; else bad "$md links a missing file: $target"; fi
    done < <(grep -o '!\?\[[^]]*\]([^) ]*' "$md" | sed 's/.*](//')
    # a path named in backquotes that leaves the repository, e.g. `../shared/X`
    if grep -n '`\.\./[^`]*`' "$md" >/dev/null; then
        bad "$md names a path outside the repository: $(grep -o '`\.\./[^`]*`' "$md" | head -1)"
    else ok; fi
done < <(find README.md docs -name '*.md' | sort)
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

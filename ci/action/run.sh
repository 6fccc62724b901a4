#!/usr/bin/env bash
# Run one promptgate command for the action: the Markdown report goes to the step summary, the
# HTML page and the JSON record to files, and the verdict (from the exit code) to the outputs.
#
# Environment: PROMPTGATE_COMMAND (e.g. `gate` or `baseline update`), PROMPTGATE_ARGS (split on
# spaces), PROMPTGATE_CONFIG and PROMPTGATE_CACHE (read by promptgate itself), PROMPTGATE_IMPORT
# (a cache export merged in first when the file exists), GITHUB_OUTPUT, GITHUB_STEP_SUMMARY,
# RUNNER_TEMP.
set -uo pipefail

: "${GITHUB_OUTPUT:?set by GitHub Actions}"
read -r -a command <<< "${PROMPTGATE_COMMAND:-gate}"
read -r -a extra <<< "${PROMPTGATE_ARGS:-}"
[ "${#command[@]}" -gt 0 ] || { echo "::error title=promptgate::the command input is empty" >&2; exit 2; }

if [ -n "${PROMPTGATE_IMPORT:-}" ] && [ -f "$PROMPTGATE_IMPORT" ]; then
    promptgate cache import --quiet "$PROMPTGATE_IMPORT" || {
        echo "::error title=promptgate::could not import $PROMPTGATE_IMPORT into the cache" >&2
        echo "verdict=error" >> "$GITHUB_OUTPUT"
        exit 2
    }
fi

out="$(mktemp -d "${RUNNER_TEMP:-/tmp}/promptgate-report.XXXXXX")"
reports=()
case "${command[0]}" in
    # The commands that judge a run write every report; the others print what they print.
    gate | run | drift | compare | merge)
        reports=(--format markdown --out "$out/report.html" --out "$out/run.json")
        ;;
esac

# stdout is the summary; stderr goes to the log as it comes and to a file, so that a command
# that ends in an error before any report (a missing baseline, --max-calls) still says why in
# the summary and the pull request's comment, not only in the log.
set +e
{
    promptgate "${command[@]}" ${extra[@]+"${extra[@]}"} ${reports[@]+"${reports[@]}"} 2>&1 1>&3 3>&- |
        tee "$out/stderr.txt" >&2
} 3> "$out/summary.md"
status=${PIPESTATUS[0]}
set -e

case "$status" in
    0) verdict=pass ;;
    1) verdict=regressed ;;
    3) verdict=inconclusive ;;
    7) verdict=drifted ;;
    *) verdict=error ;;
esac
if [ "$status" -ne 0 ] && [ ! -s "$out/summary.md" ]; then
    # Escaped into a <pre>: the message may quote a file, and must not become Markdown or HTML.
    {
        echo "## promptgate ${command[*]}: $verdict (exit $status)"
        echo
        echo "<pre>"
        tail -n 20 "$out/stderr.txt" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'
        echo "</pre>"
    } > "$out/summary.md"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
fi
{
    echo "verdict=$verdict"
    echo "exit-code=$status"
    echo "summary=$out/summary.md"
    if [ "${#reports[@]}" -gt 0 ]; then
        echo "report-html=$out/report.html"
        echo "report-json=$out/run.json"
    fi
} >> "$GITHUB_OUTPUT"
cat "$out/summary.md"
exit "$status"

#!/usr/bin/env bash
# Count the linear regions of the runs fcnn_run_START .. fcnn_run_END (count_linear_regions.py for each).
set -u

usage() {
    cat <<'USAGE'
usage: count_linear_regions_script.sh -s START -e END [-m MODELS_DIR] [-f] [-- extra args]

Runs count_linear_regions.py on MODELS_DIR/fcnn_run_<id>/weights.dat for id = START..END.
  -s START       first run id
  -e END         last run id (inclusive)
  -m MODELS_DIR  where the runs live (default forward_pass/activation_pattern/models)
  -f             force: count again from scratch even when a run's regions_<domain>.json says complete
                 (without -f, complete runs are skipped, incomplete ones continue with --resume, and
                 outputs of other weights or another --tol are recounted from scratch)
  -- ARGS        passed on to count_linear_regions.py (e.g. -- --backend scip --time-limit 600 -q;
                 local counts: -- --center-test-index 0:20 --width 0.005,0.01, then the table shows the
                 median count of the first width)
Keeps going when a run fails; prints a table (run, regions, complete, seconds, status) at the end
and exits non-zero if any run failed or is missing (130 after Ctrl-C).
Uses .venv/bin/python next to this script if present, else python3.
USAGE
}

START=""; END=""; MODELS="forward_pass/activation_pattern/models"; FORCE=0
while getopts ":s:e:m:fh" opt; do
    case "$opt" in
        s) START="$OPTARG" ;;
        e) END="$OPTARG" ;;
        m) MODELS="$OPTARG" ;;
        f) FORCE=1 ;;
        h) usage; exit 0 ;;
        :) echo "error: -$OPTARG needs a value" >&2; usage >&2; exit 2 ;;
        \?) echo "error: unknown option -$OPTARG" >&2; usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
EXTRA=("$@")
SIDE=0
for a in ${EXTRA[@]+"${EXTRA[@]}"}; do
    case "$a" in --estimate|--estimate=*|--mipbound|--mipbound=*) SIDE=1 ;; esac
done

int_re='^[0-9]+$'
if ! [[ "$START" =~ $int_re ]] || ! [[ "$END" =~ $int_re ]]; then
    echo "error: -s START and -e END must be non-negative integers (got '${START}', '${END}')" >&2
    usage >&2
    exit 2
fi
if (( START > END )); then
    echo "error: -s $START is after -e $END" >&2
    exit 2
fi
if [ ! -d "$MODELS" ]; then
    echo "error: -m $MODELS: no such directory" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY="python3"; fi
CLI="$HERE/count_linear_regions.py"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

json_field() {  # json_field FILE -> "count complete seconds" of a regions json (or "- - -")
    "$PY" - "$1" <<'PYEOF' 2>/dev/null || echo "- - -"
import json, sys
d = json.load(open(sys.argv[1]))
if "rows" in d:   # a sweep of local boxes: median count of the first width, all complete, total seconds
    s = d["summary"][0]
    print(f"median:{s['median']:g}" if s["median"] is not None else "-",
          str(all(r["complete"] for r in d["rows"])).lower(), round(sum(r["seconds"] for r in d["rows"]), 2))
else:
    print(d.get("count", "-"), str(d.get("complete", "-")).lower(), d.get("times", {}).get("total", "-"))
PYEOF
}

rows=()
nbad=0
interrupted=0
for ((id = START; id <= END; id++)); do
    run="fcnn_run_$id"
    w="$MODELS/$run/weights.dat"
    if [ ! -f "$w" ]; then
        echo "== $run: missing ($w not found)" >&2
        rows+=("$run - - - missing")
        nbad=$((nbad + 1))
        continue
    fi
    line="$("$PY" "$CLI" -w "$w" ${EXTRA[@]+"${EXTRA[@]}"} --status)"
    if [ $? -ne 0 ] || [ -z "$line" ]; then
        rows+=("$run - - - FAILED")
        nbad=$((nbad + 1))
        continue
    fi
    before="${line%% *}"
    summary="${line#* }"
    status="done"
    if [ "$FORCE" -eq 0 ] && [ "$before" = "complete" ]; then
        status="skipped"
        echo "== $run: complete ($summary), skipped" >&2
    else
        echo "== $run" >&2
        args=(-w "$w")
        # continue an incomplete count of these weights; start over on -f or stale outputs (an --estimate
        # or --mipbound adds its record to the summary and enumerates nothing: nothing to resume)
        [ "$FORCE" -eq 0 ] && [ "$before" = "incomplete" ] && [ "$SIDE" -eq 0 ] && args+=(--resume)
        "$PY" "$CLI" "${args[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
        rc=$?
        if [ $rc -eq 130 ]; then
            status="interrupted"; interrupted=1
        elif [ $rc -ne 0 ]; then
            status="FAILED(rc=$rc)"
        fi
    fi
    read -r count complete seconds <<<"$( [ -f "$summary" ] && json_field "$summary" || echo "- - -")"
    if [ "$status" != "done" ] && [ "$status" != "skipped" ]; then
        nbad=$((nbad + 1))
    fi
    rows+=("$run $count $complete $seconds $status")
    if [ $interrupted -eq 1 ]; then
        echo "interrupted: stopping after $run" >&2
        break
    fi
done

printf '\n%-18s %12s %9s %10s  %s\n' run regions complete seconds status
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-18s %12s %9s %10s  %s\n' $r
done
if [ $interrupted -eq 1 ]; then exit 130; fi
if [ $nbad -gt 0 ]; then
    echo "$nbad run(s) failed or missing" >&2
    exit 1
fi
exit 0

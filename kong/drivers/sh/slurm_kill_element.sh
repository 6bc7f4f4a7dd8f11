# shellcheck shell=sh
# Kill one element of a kong job array whose id kong never learnt: "$1" the array's
# name, "$2" the element's index. Nothing carries the name: nothing to do (as
# `scancel --name` of a name nobody carries, which also says nothing).
# One line of code: kill commands go one per line to each.sh.
kong_a=$(squeue -h -r -u "$(id -un)" -n "$1" -o '%F' | head -n 1) || exit 1; [ -n "$kong_a" ] || exit 0; exec scancel "${kong_a}_$2"

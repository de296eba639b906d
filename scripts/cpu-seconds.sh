# Sourced by .ci/run, scripts/test.sh and packaging/ci-check.sh: the
# CPU-seconds (user + sys) a shell's finished, waited-for children used,
# from bash's `times` (its second line), so that a log says where a run's
# CPU went, not only its minutes.
#
#   cpu_mark FILE        # in the shell whose children count, never in $(…)
#   seconds=$(cpu_marked FILE)
#
# `times` must run in that shell itself: in a pipeline or a command
# substitution it runs in a subshell, which has no children yet (every
# figure read 0 that way).
cpu_mark() { times >"$1"; }
cpu_marked() {
  awk 'NR == 2 {
      t = 0
      for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
      printf "%d\n", t
    }' "$1"
}

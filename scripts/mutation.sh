#!/usr/bin/env bash
# Mutation testing (mutmut 3) of one module group; see docs/testing.md, "Mutation testing".
#   scripts/mutation.sh GROUP [--max-children N]   run GROUP from a fresh mutants/
#   scripts/mutation.sh GROUP results              list the last run's survivors again
#   scripts/mutation.sh GROUP show NAME            the diff of one mutant
#   scripts/mutation.sh GROUP rerun NAME...        run these mutants of the last run again (after new tests)
# mutmut 3 takes one only_mutate list and one test selection from setup.cfg's [mutmut] section,
# so this writes that section for GROUP, runs mutmut from a fresh mutants/, prints the survivors
# and restores setup.cfg (whose committed section is the `evolution` group).
# Runs without PYTHONPATH: the tests must import the mutated copy in mutants/.
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
group=${1:?"group: evolution | prune | prune-channels | rank-stats | proxyless | loss-synth"}
shift
mode=run children=(--max-children 1)
case ${1:-} in
  results|show|rerun) mode=$1; shift ;;
  ?*) children=("$@") ;;
esac

case $group in
  evolution)
    mutate="dfnas/nas/strategies/evolution.py dfnas/nas/strategies/evaluator.py"
    tests="tests/nas/test_nas_evolution.py tests/nas/test_search_spos.py tests/nas/test_search_learns.py"
    k="not console_script and not spos_preset_trains" ;;
  prune)
    mutate="dfnas/prune/search.py dfnas/prune/score.py"
    tests="tests/prune/test_prune_search.py"
    k="" ;;
  prune-channels)
    mutate="dfnas/prune/channels.py"
    tests="tests/prune/test_prune_channels.py"
    k="" ;;
  rank-stats)
    mutate="dfnas/evaluate/rank_stats.py"
    tests="tests/evaluate/test_consistency_stats.py"
    k="" ;;
  proxyless)
    mutate="dfnas/nas/strategies/proxyless_gates.py dfnas/nas/strategies/proxyless_reinforce.py"
    tests="tests/nas/test_search_proxyless.py tests/nas/test_nas_proxyless.py"
    k="not reference_supernet_builds and not published_proxyless" ;;
  loss-synth)
    mutate="dfnas/nas/loss.py dfnas/synth/calibration.py dfnas/synth/schedule.py dfnas/synth/region.py"
    tests="tests/nas/test_search_train.py tests/synth/test_synth_calibration.py tests/synth/test_synth_schedule.py tests/synth/test_synth_region.py"
    k="" ;;
  *) echo "unknown group $group" >&2; exit 2 ;;
esac

cp setup.cfg setup.cfg.mutation-backup
trap 'mv setup.cfg.mutation-backup setup.cfg' EXIT
{
  echo "[mutmut]"
  echo "source_paths = dfnas/"
  echo "only_mutate ="; for f in $mutate; do echo "    $f"; done
  echo "pytest_add_cli_args_test_selection ="; for f in $tests; do echo "    $f"; done
  if [[ -n $k ]]; then echo "    -k"; echo "    $k"; fi
  echo "pytest_add_cli_args ="; echo "    -p"; echo "    no:cacheprovider"
  echo "process_isolation = forkserver"
} > setup.cfg
case $mode in
  show) env -u PYTHONPATH mutmut show "$@" ;;
  results) env -u PYTHONPATH mutmut results ;;
  rerun) env -u PYTHONPATH mutmut run --max-children 1 "$@"; env -u PYTHONPATH mutmut results ;;
  run)
    rm -rf mutants
    env -u PYTHONPATH mutmut run "${children[@]}"
    env -u PYTHONPATH mutmut results ;;
esac
}
main "$@"; exit

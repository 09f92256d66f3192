#!/usr/bin/env bash
# Mutation testing (mutmut 3) of one module group; see docs/testing.md, "Mutation testing".
#   scripts/mutation.sh GROUP [--max-children N]   run GROUP from a fresh mutants/
#   scripts/mutation.sh GROUP results              list the last run's survivors again
#   scripts/mutation.sh GROUP show NAME            the diff of one mutant
#   scripts/mutation.sh GROUP rerun NAME...        run these mutants of the last run again (after new tests);
#                                                  NAME may be an fnmatch pattern: how the documented subsets
#                                                  of synth-engine and ops are run (docs/testing.md)
# mutmut 3 takes one only_mutate list and one test selection from setup.cfg's [mutmut] section,
# so this writes that section for GROUP, runs mutmut from a fresh mutants/, prints the survivors
# and restores setup.cfg (whose committed section is the `evolution` group).
# Runs without PYTHONPATH: the tests must import the mutated copy in mutants/.
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
group=${1:?"group: evolution | prune | prune-channels | rank-stats | proxyless | loss-synth | synth-engine | ops | retrain | nat | nat-search | nat-loop | spos | search-base | darts | proxyless-search"}
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
  synth-engine)
    mutate="dfnas/synth/losses.py dfnas/synth/hooks.py dfnas/synth/engine.py"
    tests="tests/synth/test_synth_losses.py tests/synth/test_synth_engine.py tests/synth/test_synth_step_reference.py tests/synth/test_synth_nan.py tests/synth/test_synth_hardening.py tests/synth/test_synth_calibration.py tests/synth/test_synth_noise_source.py tests/synth/test_synth_quality.py tests/synth/test_synth_quality_bn_match.py tests/synth/test_synth_layouts.py tests/synth/test_synth_region.py"
    k="" ;;
  ops)
    mutate="dfnas/ops/__init__.py dfnas/ops/_autograd.py dfnas/ops/_backend.py dfnas/ops/_checks.py dfnas/ops/_common.py dfnas/ops/_fake.py dfnas/ops/_reference_kernels.py dfnas/ops/reference.py"
    tests="tests/ops/test_ops_arguments.py tests/ops/test_ops_bn_stat_loss.py tests/ops/test_ops_tv_loss.py tests/ops/test_ops_crop_windows.py tests/ops/test_ops_region_adam.py tests/ops/test_ops_properties.py tests/gpu/test_gpu_backend.py tests/gpu/test_gpu_reference_kernels.py"
    k="" ;;
  retrain)
    mutate="dfnas/evaluate/retrain.py"
    tests="tests/evaluate/test_train_retrain.py tests/evaluate/test_train_loss.py tests/evaluate/test_train_resume.py"
    k="not sigkill" ;;
  nat)
    mutate="dfnas/nas/strategies/nat_front.py dfnas/nas/strategies/nat_nsga.py dfnas/nas/strategies/nat_predictors.py"
    tests="tests/nas/test_nat_front.py tests/nas/test_nat_predictors.py"
    k="" ;;
  nat-search)
    mutate="dfnas/nas/strategies/nat_archive.py dfnas/nas/strategies/nat_costs.py dfnas/nas/strategies/nat_spaces.py dfnas/nas/strategies/nat_supernet.py"
    tests="tests/nas/test_nat_units.py tests/nas/test_nat_search.py tests/nas/test_nat_proxyless.py tests/nas/test_nat_front.py tests/nas/test_nat_predictors.py"
    # whole searches (3-15 s a mutant on two busy cores) deselected: their parts are unit-tested
    k="not sigkill and not end_to_end and not many_objectives and not resume_after and not front_is_non_dominated and not a_front_member_trains" ;;
  nat-loop)
    # NatSearch's units without a whole search (those are in tests/nas/test_nat_search.py)
    mutate="dfnas/nas/strategies/nat.py"
    tests="tests/nas/test_nat_loop.py"
    k="" ;;
  spos)
    mutate="dfnas/nas/strategies/spos.py"
    tests="tests/nas/test_search_spos.py tests/nas/test_search_spos_loop.py tests/nas/test_nas_spos.py"
    k="not console_script and not spos_preset_trains" ;;
  search-base)
    mutate="dfnas/nas/strategies/base.py dfnas/nas/strategies/health.py"
    tests="tests/nas/test_search_loop.py tests/nas/test_search_learns.py"
    k="loop or health or fitted" ;;
  darts)
    mutate="dfnas/nas/strategies/darts.py"
    tests="tests/nas/test_darts_units.py tests/nas/test_search_darts.py tests/nas/test_nas_darts.py tests/nas/test_darts_fused.py tests/nas/test_search_learns.py"
    k="not console_script and not spos_preset_trains" ;;
  proxyless-search)
    mutate="dfnas/nas/strategies/proxyless.py"
    tests="tests/nas/test_search_proxyless.py tests/nas/test_search_proxyless_loop.py tests/nas/test_nas_proxyless.py tests/nas/test_proxyless_depthwise.py tests/nas/test_proxyless_gate_probe.py tests/nas/test_proxyless_reference.py tests/nas/test_proxyless_relu6.py"
    k="not reference_supernet_builds and not published_proxyless" ;;
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

"""The search's decisions from a sweep's trial records (hm2bp_service/search.py), without a
service: the median rule and successive halving judge a trial against the others at the same
epoch, with the reason; replaying the same history draws the same next points; a running trial
is told to TPE (constant liar) so two asks in a row differ."""

from __future__ import annotations

from hm2bp_service.search import Trial, prune_reason, suggest
from hm2bp_service.states import JobState

SPACE = {"training.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "network.layers[0].threshold": {"choices": [5, 10]}}
DONE = [Trial({"training.lr": 1e-3, "network.layers[0].threshold": 5}, JobState.SUCCEEDED, {1: 0.8, 2: 0.9, 3: 0.95}),
        Trial({"training.lr": 2e-3, "network.layers[0].threshold": 10}, JobState.SUCCEEDED, {1: 0.6, 2: 0.7, 3: 0.72}),
        Trial({"training.lr": 3e-3, "network.layers[0].threshold": 10}, JobState.PRUNED, {1: 0.2})]


def search(**extra) -> dict:
    return {"method": "tpe", "space": SPACE, "objective": "test_accuracy", "pruner": "median",
            "prune_startup_trials": 2, "seed": 0, **extra}


def running(*values: float) -> Trial:
    return Trial({"training.lr": 5e-3, "network.layers[0].threshold": 5}, JobState.RUNNING,
                 {epoch: value for epoch, value in enumerate(values, start=1)})


def test_median_rule():
    # the median of the finished trials at epoch 1 is (0.8 + 0.6) / 2; the pruned one does not count
    reason = prune_reason(search(), DONE, running(0.65), 1)
    assert reason == ("test_accuracy 0.6500 after epoch 1 is below the median 0.7000 of the 2 finished trials "
                      "at that epoch")
    assert prune_reason(search(), DONE, running(0.75), 1) is None
    assert prune_reason(search(), DONE, running(0.75, 0.81), 2) is None  # 0.81 >= (0.9 + 0.7) / 2
    assert prune_reason(search(), DONE, running(0.75, 0.79), 2) is not None
    assert prune_reason(search(prune_startup_trials=3), DONE, running(0.1), 1) is None  # too few finished yet
    assert prune_reason(search(pruner="none"), DONE, running(0.1), 1) is None


def test_successive_halving_keeps_the_top_third_at_each_rung():
    halving = search(pruner="halving")
    # rung 0 is epoch 1: with the 3 others there, a trial goes on only as the best of the 4
    assert prune_reason(halving, DONE, running(0.85), 1) is None
    reason = prune_reason(halving, DONE, running(0.7), 1)
    assert reason == "test_accuracy 0.7000 at epoch 1 is not in the top 1/3 of the 4 trials that reached that epoch"
    # epoch 2 is no rung; rung 1 is epoch 3, where two finished trials compete
    assert prune_reason(halving, DONE, running(0.85, 0.5), 2) is None
    assert prune_reason(halving, DONE, running(0.85, 0.9, 0.96), 3) is None
    assert prune_reason(halving, DONE, running(0.85, 0.9, 0.9), 3) is not None


def test_asks_are_replayable_and_distinct():
    first = suggest(search(), DONE, 2)
    assert first == suggest(search(), DONE, 2)  # the database's records decide, nothing else
    assert first[0] != first[1]
    for point in first:
        assert 1e-4 <= point["training.lr"] <= 1e-2 and point["network.layers[0].threshold"] in (5, 10)
    with_running = suggest(search(), [*DONE, Trial(first[0], JobState.RUNNING)], 1)
    assert with_running[0] != first[0]
    random = suggest(search(method="random"), [], 3)
    assert len({p["training.lr"] for p in random}) == 3

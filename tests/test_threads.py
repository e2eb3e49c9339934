"""BLAS threads: the auto policy (a probe that takes threads only when they pay), the count a run
records and reuses on --resume, and the probe leaving training exactly as it would be."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from helpers import StopAt, digits_config, invoke, load_weights, train_config, write_config
from netcli import threads
from netcli.errors import Interrupted, NetcliError


def blas_now() -> int:
    return min(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


class FakeClock:
    """A clock whose step time depends on the BLAS threads in force: steps[n] seconds at n threads."""

    def __init__(self, steps: dict[int, float]):
        self.steps, self.now, self.calls = steps, 0.0, []

    def __call__(self) -> float:
        return self.now

    def step(self):
        n = blas_now()
        self.calls.append(n)
        self.now += self.steps[n]


@pytest.mark.parametrize("steps, chosen", [
    ({1: 0.010, 2: 0.004}, 2),            # threads pay: 2.5x faster
    ({1: 0.010, 2: 0.0095}, 1),           # 5% faster is not enough (MIN_SPEEDUP 1.10)
    ({1: 0.010, 2: 0.030}, 1),            # a loaded machine: threads stall each other
    ({1: 0.0002, 2: 0.0001}, 1),          # too short a step to probe
])
def test_auto_takes_threads_only_when_they_are_clearly_faster(steps, chosen):
    clock = FakeClock(steps)
    choice = threads.for_training("auto", clock.step, cores=2, clock=clock)
    assert choice.count == chosen and choice.setting == "auto"
    if steps[1] >= threads.TINY_STEP:
        assert set(clock.calls) == {1, 2} and "2 threads" in choice.reason
    else:
        assert set(clock.calls) == {1} and "too short" in choice.reason


def test_auto_probes_powers_of_two_up_to_the_cores():
    clock = FakeClock({1: 0.010, 2: 0.006, 4: 0.004, 6: 0.0041})
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=6, user_api="blas"):
        if blas_now() < 6:
            pytest.skip("this BLAS was built for fewer than 6 threads")
        choice = threads.for_training("auto", clock.step, cores=6, clock=clock)
    assert sorted(set(clock.calls)) == [1, 2, 4, 6]
    assert choice.count == 4          # 6 threads is not faster than 4


class FakeWays(FakeClock):
    """FakeClock with the batch way too: steps[("batch", n)] seconds a step cut in n parts."""

    def split_step(self, n):
        def step():
            assert blas_now() == 1, "batch parts run with BLAS on one thread"
            self.calls.append(("batch", n))
            self.now += self.steps[("batch", n)]
        return step


@pytest.mark.parametrize("steps, chosen", [
    ({1: 0.010, 2: 0.008, ("batch", 2): 0.006}, (2, "batch")),     # skinny GEMMs: parts win
    ({1: 0.010, 2: 0.005, ("batch", 2): 0.008}, (2, "blas")),      # big GEMMs: BLAS's threads win
    ({1: 0.010, 2: 0.030, ("batch", 2): 0.0098}, (1, "blas")),     # neither is 10% faster
])
def test_auto_times_both_ways_of_using_threads(steps, chosen):
    clock = FakeWays(steps)
    choice = threads.for_training("auto", clock.step, cores=2, clock=clock, split_step=clock.split_step)
    assert (choice.count, choice.way) == chosen
    assert set(clock.calls) == {1, 2, ("batch", 2)}
    assert choice.split == (2 if chosen == (2, "batch") else 1)
    assert "2 threads batch parts" in choice.reason and "2 threads in BLAS" in choice.reason


def test_a_pinned_count_probes_only_the_way_and_a_pinned_way_only_the_count():
    clock = FakeWays({1: 0.010, 2: 0.008, ("batch", 2): 0.006})
    choice = threads.for_training(2, clock.step, clock=clock, split_step=clock.split_step)
    assert (choice.count, choice.way, choice.setting) == (2, "batch", 2)
    clock = FakeWays({1: 0.010, 2: 0.004, ("batch", 2): 0.008})
    assert threads.for_training(2, clock.step, clock=clock, split_step=clock.split_step).way == "blas"
    clock = FakeWays({1: 0.010, 2: 0.0075, ("batch", 2): 0.008})     # BLAS not 10% faster: batch
    assert threads.for_training(2, clock.step, clock=clock, split_step=clock.split_step).way == "batch"
    clock.calls.clear()
    choice = threads.for_training(2, clock.step, clock=clock, parallel="blas", split_step=clock.split_step)
    assert (choice.count, choice.way, choice.reason) == (2, "blas", "asked for") and clock.calls == []
    choice = threads.for_training("auto", clock.step, cores=2, clock=clock, parallel="blas",
                                  split_step=clock.split_step)
    assert ("batch", 2) not in clock.calls and choice.way == "blas"
    choice = threads.for_training(2, clock.step, clock=clock, parallel="batch", split_step=None)
    assert choice.way == "blas" and "splits by rows" in choice.reason      # a net with a sparsity penalty


def test_the_batch_way_is_timed_before_blas_threads_wake():
    clock = FakeWays({1: 0.010, 2: 0.008, ("batch", 2): 0.006})
    threads.for_training("auto", clock.step, cores=2, clock=clock, split_step=clock.split_step)
    first_threaded = clock.calls.index(2)
    assert ("batch", 2) in clock.calls[:first_threaded] and ("batch", 2) not in clock.calls[first_threaded:]


def test_a_number_is_used_as_given_and_one_core_needs_no_probe():
    calls = []
    assert threads.for_training(3, lambda: calls.append(1)).count == 3
    assert threads.for_training("auto", lambda: calls.append(1), cores=1).count == 1
    assert calls == []


def test_inference_uses_threads_only_for_a_lot_of_work(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    assert threads.for_inference("auto", 360, 20_000).count == 1
    assert threads.for_inference("auto", 100_000, 1_000_000).count == 4
    assert threads.for_inference(2, 10, 10).count == 2


@pytest.mark.parametrize("text, value", [("auto", "auto"), (None, "auto"), ("1", 1), ("4", 4), (2, 2)])
def test_parse_threads(text, value):
    assert threads.parse_threads(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", ""])
def test_parse_threads_refuses_what_is_not_a_count(text):
    with pytest.raises(NetcliError, match="expected auto or a whole number of at least 1"):
        threads.parse_threads(text)


def test_blas_threads_limits_inside_the_block_and_restores_after():
    before = blas_now()
    with threads.blas_threads(1):
        assert blas_now() == 1
    assert blas_now() == before


def test_the_config_key_is_checked(tmp_path):
    result = invoke("validate", write_config(tmp_path, digits_config(training={"threads": 0}), "x"), "--static")
    assert result.exit_code == 2 and "training.threads: must be a positive integer or 'auto', got 0" in result.stderr


# -- in training ------------------------------------------------------------------------

def test_the_run_records_the_threads_and_the_probe_changes_nothing(tmp_path, monkeypatch):
    cfg = digits_config(model={"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                          {"type": "dropout", "rate": 0.3},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]})
    monkeypatch.setattr(threads, "TINY_STEP", 0.0)          # always probe, even this small net,
    monkeypatch.setattr(threads, "available_cores", lambda: 2)   # on any machine and environment
    monkeypatch.setattr(threads, "blas_limit", lambda: None)
    auto = train_config(tmp_path, cfg, "auto").summary
    assert auto["threads"]["setting"] == "auto" and "probe" in auto["threads"]["reason"]
    used = auto["threads"]["used"]
    fixed = train_config(tmp_path, digits_config(training={"threads": used}, model=cfg["model"]), "fixed").summary
    assert fixed["threads"] == {"setting": used, "used": used, "way": "blas", "reason": "asked for"}
    a, b = load_weights(tmp_path / "auto"), load_weights(tmp_path / "fixed")
    for key in a:
        if key.startswith("layers."):
            np.testing.assert_array_equal(a[key], b[key])     # the probe's steps left no trace (dropout too)


def test_resume_uses_the_thread_count_the_run_used_before(tmp_path, monkeypatch):
    from netcli.training import resume, train
    path = write_config(tmp_path, digits_config(training={"epochs": 4}), "x")
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "run", reporter=StopAt(2))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["threads"]["used"] >= 1
    summary["threads"]["used"] = 2                           # as if the first part had chosen 2
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    import netcli.training as training
    probed = []
    monkeypatch.setattr(training, "for_training", lambda *a, **k: probed.append(1))
    done = resume(tmp_path / "run").summary
    assert done["threads"] == {"setting": "auto", "used": 2, "way": "blas", "reason": "as this run used before"}
    assert probed == []


def test_the_training_log_says_what_auto_chose(tmp_path):
    result = invoke("train", write_config(tmp_path, digits_config(), "x"), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^threads: \d+ \(auto: ", result.stderr, re.M), result.stderr


def test_threads_on_the_command_line(tmp_path):
    run = tmp_path / "run"
    result = invoke("train", write_config(tmp_path, digits_config(), "x"), "--run-dir", run, "--threads", "1")
    assert result.exit_code == 0, result.stderr
    assert "threads: 1 (1: asked for)" in result.stderr
    assert json.loads((run / "summary.json").read_text())["threads"]["used"] == 1
    for args in (["eval", run], ["predict", run], ["gradcheck", run, "--max-coords", "5"],
                 ["plot", run, "--confusion", "--out", tmp_path / "c.png"]):
        done = invoke(*args, "--threads", "2")
        assert done.exit_code == 0, (args, done.stderr)
    bad = invoke("eval", run, "--threads", "0")
    assert bad.exit_code == 2 and "expected auto or a whole number of at least 1" in bad.stderr
    # --resume takes --threads without counting it as a request to train longer
    again = invoke("train", "--resume", run, "--threads", "2")
    assert again.exit_code == 0 and "nothing to do" in again.stderr, again.stderr


def test_a_full_batch_run_gives_its_threads_to_loss_and_grad_alone(tmp_path, monkeypatch):
    from netcli.log import Reporter
    from netcli.nn.network import Network
    from netcli.training import train
    seen = {"gradient": set(), "scipy": set()}
    real = Network.loss_and_grad

    def counted(self, *args, **kwargs):
        seen["gradient"].add(blas_now())
        return real(self, *args, **kwargs)

    class Look(Reporter):
        def epoch(self, record):            # called from scipy's callback, between its iterations
            seen["scipy"].add(blas_now())

    monkeypatch.setattr(Network, "loss_and_grad", counted)
    cfg = digits_config(training={"threads": 2, "parallel": "blas"})
    cfg["optimizer"] = {"type": "lbfgs", "max_iter": 3}
    train(write_config(tmp_path, cfg, "x"), run_dir=tmp_path / "run", reporter=Look(quiet=True))
    assert seen == {"gradient": {2}, "scipy": {1}}


def test_auto_keeps_a_limit_the_environment_or_a_caller_has_set():
    from threadpoolctl import threadpool_limits
    calls = []
    with threadpool_limits(limits=1, user_api="blas"):
        choice = threads.for_training("auto", lambda: calls.append(1))
    assert choice.count == 1 and "limited to 1" in choice.reason and calls == []


def test_the_running_summary_records_the_threads_at_once(tmp_path):
    from netcli.log import Reporter
    from netcli.training import train
    seen = []

    class Look(Reporter):
        def epoch(self, record):
            seen.append(json.loads((tmp_path / "run" / "summary.json").read_text()))

    train(write_config(tmp_path, digits_config(), "x"), run_dir=tmp_path / "run", reporter=Look(quiet=True))
    assert seen[0]["status"] == "running" and seen[0]["threads"]["used"] >= 1   # a kill here resumes on it


def test_check_retrains_a_full_batch_run_on_the_threads_it_used(tmp_path, monkeypatch):
    from netcli.diff import check_run
    from netcli.training import train
    cfg = digits_config()
    cfg["optimizer"] = {"type": "lbfgs", "max_iter": 4}
    import netcli.training as training
    monkeypatch.setattr(training, "for_training", lambda setting, step, **kw: threads.ThreadChoice(2, "auto", "test"))
    train(write_config(tmp_path, cfg, "x"), run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["threads"]["used"] == 2
    monkeypatch.setattr(training, "for_training", lambda setting, step, **k: threads.fixed(setting)
                        if setting != "auto" else pytest.fail("--check must not probe"))
    assert check_run(tmp_path / "run")["match"]


# -- the batch way in training ---------------------------------------------------------------

def test_auto_and_the_choice_pinned_train_alike_with_the_batch_way_too(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "TINY_STEP", 0.0)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "blas_limit", lambda: None)
    monkeypatch.setattr(threads, "MIN_SPEEDUP", 0.0)      # any candidate wins: the fastest is taken
    auto = train_config(tmp_path, digits_config(), "auto").summary["threads"]
    assert auto["setting"] == "auto" and auto["way"] in ("blas", "batch")
    pinned = digits_config(training={"threads": auto["used"], "parallel": auto["way"]})
    fixed = train_config(tmp_path, pinned, "fixed").summary["threads"]
    assert (fixed["used"], fixed["way"]) == (auto["used"], auto["way"])
    a, b = load_weights(tmp_path / "auto"), load_weights(tmp_path / "fixed")
    for key in a:
        if key.startswith("layers."):
            np.testing.assert_array_equal(a[key], b[key])


def test_the_batch_way_trains_like_one_thread_and_repeats_itself(tmp_path):
    one = train_config(tmp_path, digits_config(training={"threads": 1}), "one").summary
    runs = [train_config(tmp_path, digits_config(training={"threads": 2, "parallel": "batch"}), name).summary
            for name in ("a", "b")]
    assert runs[0]["threads"] == {"setting": 2, "used": 2, "way": "batch", "reason": "asked for"}
    a, b, c = (load_weights(tmp_path / name) for name in ("a", "b", "one"))
    for key in a:
        if key.startswith("layers."):
            np.testing.assert_array_equal(a[key], b[key])               # same parts, same bits
            np.testing.assert_allclose(a[key], c[key], rtol=1e-3, atol=1e-4)   # the sums' order only
    assert runs[0]["test"]["accuracy"] == pytest.approx(one["test"]["accuracy"], abs=0.01)


def test_a_resumed_batch_way_run_matches_an_uninterrupted_one(tmp_path):
    from netcli.training import resume, train
    cfg = digits_config(training={"epochs": 4, "threads": 2, "parallel": "batch"})
    path = write_config(tmp_path, cfg, "x")
    train(path, run_dir=tmp_path / "whole")
    with pytest.raises(Interrupted):
        train(path, run_dir=tmp_path / "cut", reporter=StopAt(2))
    done = resume(tmp_path / "cut").summary
    assert done["threads"]["way"] == "batch" and done["epochs"] == 4
    a, b = load_weights(tmp_path / "whole"), load_weights(tmp_path / "cut")
    for key in a:
        if key.startswith("layers."):
            np.testing.assert_array_equal(a[key], b[key])


DROPOUT_MODEL = {"input": 64, "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                         {"type": "dropout", "rate": 0.3},
                                         {"type": "dense", "units": 10, "activation": "softmax"}]}


def test_a_network_with_dropout_trains_on_the_batch_way_like_one_thread(tmp_path):
    one = train_config(tmp_path, digits_config(training={"threads": 1}, model=DROPOUT_MODEL), "one").summary
    runs = [train_config(tmp_path, digits_config(training={"threads": 2, "parallel": "batch"}, model=DROPOUT_MODEL),
                         name).summary for name in ("a", "b")]
    assert runs[0]["threads"]["way"] == "batch"
    a, b, c = (load_weights(tmp_path / name) for name in ("a", "b", "one"))
    for key in a:
        if key.startswith("layers."):
            np.testing.assert_array_equal(a[key], b[key])
            # the same dropout masks as one thread's: only the sums' order differs
            np.testing.assert_allclose(a[key], c[key], rtol=1e-3, atol=1e-4)
    assert runs[0]["test"]["accuracy"] == pytest.approx(one["test"]["accuracy"], abs=0.01)


def test_a_network_with_a_sparsity_penalty_gets_blas_threads_for_the_batch_way(tmp_path):
    cfg = digits_config(training={"threads": 2, "parallel": "batch"},
                        regularization={"l2": 1.0e-4, "sparsity": {"layer": 0}},
                        model={"layers": [{"type": "dense", "units": 16, "activation": "sigmoid"},
                                          {"type": "dense", "units": 10, "activation": "softmax"}]})
    result = invoke("train", write_config(tmp_path, cfg, "x"), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "parallel: batch needs a network whose gradient splits by rows" in " ".join(result.stderr.split())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["threads"]["way"] == "blas"

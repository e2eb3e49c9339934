"""Where the driver's next trial comes from, and what its end means: a fixed list (a grid or
--random sweep: every trial is submitted at once and Dask hands them to the workers), or a study
(a search: a trial is asked for when a worker is free, and the study is told how each one ended;
netcli.sweep.search explains why the driver does both)."""

from __future__ import annotations

import math
from pathlib import Path

from netcli.config import parse_value
from netcli.errors import ConfigError
from netcli.files import plain
from netcli.sweep.planning import PATH_KEYS, Sweep, Trial, check_trials, make_trial, trial_name
from netcli.sweep.ranking import score
from netcli.sweep.search import PRUNED, distributions, make_sampler, open_study, override_texts, require_optuna
from netcli.sweep.store import ENDED, read_trials

ATTR = "netcli"   # the study trial's user attribute that holds the sweep trial's entry (name, overrides, seed)


class TrialList:
    """A grid or --random sweep: the trials of sweep.yaml that trials.jsonl lacks (all of them
    for a new sweep)."""

    capacity = None          # no limit: submit everything, Dask queues it
    needs_optuna = False

    def __init__(self, sweep: Sweep, new: bool):
        self.sweep = sweep
        self.done = {} if new else {n: r for n, r in read_trials(sweep.path).items() if r.get("status") in ENDED}
        self.todo = [t for t in sweep.trials if t.name not in self.done]

    @property
    def total(self) -> int:
        return len(self.sweep.trials)

    @property
    def remaining(self) -> int:
        return len(self.todo)

    def paths(self) -> list[str]:
        """The data files the trials to run read (every worker must see them)."""
        return sorted({t.data[s][k] for t in self.todo for s, k in PATH_KEYS
                       if isinstance(t.data.get(s), dict) and t.data[s].get(k)})

    def start(self, workers: int) -> None:
        pass

    def next(self) -> Trial | dict | None:
        return self.todo.pop(0) if self.todo else None

    def task(self, trial: Trial) -> dict:
        return {}

    def ended(self, trial: Trial, record: dict) -> None:
        pass

    def entries(self) -> list[dict]:
        return [t.entry() for t in self.sweep.trials]


class StudyTrials:
    """A search: the study's trials that never ended (a stopped driver's) are run again first,
    then new ones are asked for until the study has sweep.search.trials; at most `capacity`
    run at once (default: the cluster's worker threads, set by start())."""

    needs_optuna = False    # workers need Optuna only to report to a pruner (set in __init__)

    def __init__(self, sweep: Sweep, new: bool, parallel: int | None = None):
        require_optuna()
        from optuna.trial import TrialState
        self.State = TrialState
        self.sweep, self.search, self.parallel = sweep, sweep.search, parallel
        self.needs_optuna = self.search.pruner is not None
        self.capacity = parallel
        self.distributions = distributions(sweep.axes)
        self.done: dict[str, dict] = {}
        self.rerun: list[Trial] = []
        self.entries_by_number: dict[int, dict] = {}
        self.ids: dict[str, int] = {}          # trial name -> the study's trial id (what a worker opens)
        self.study = None
        sweep.trials = []
        if not new:
            self.study = open_study(sweep.path, self.search, sweep.axes)
            self._carry_on()

    def _carry_on(self) -> None:
        """Read the study back: which trials ended, which were asked and never told."""
        records = read_trials(self.sweep.path)
        for ft in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            entry = ft.user_attrs.get(ATTR)
            if entry is None:      # the driver stopped between asking and naming it: never ran
                if ft.state == self.State.RUNNING:
                    self._tell(ft.number, state=self.State.FAIL)
                continue
            self.entries_by_number[ft.number] = entry
            self.ids[entry["name"]] = ft._trial_id
            record = records.get(entry["name"])
            if record is not None and record.get("status") in ENDED:
                self.done[entry["name"]] = record
                if ft.state == self.State.RUNNING:     # recorded, then stopped before the study was told
                    self._tell_record(ft.number, record)
            elif ft.state == self.State.RUNNING:
                try:
                    self.rerun.append(make_trial(self.sweep, ft.number, override_texts(self.sweep.axes, ft.params)))
                except ConfigError as e:   # (validated when it was asked: only if sweep.yaml was edited)
                    self._tell(ft.number, state=self.State.FAIL)
                    self.rerun.append({**entry, "status": "failed", "message": str(e)})
            else:   # told, but its record lost: what the study knows
                self.done[entry["name"]] = {**entry, "status": _STATUS.get(ft.state.name, "failed")}

    @property
    def total(self) -> int:
        return self.search.trials

    @property
    def asked(self) -> int:
        return len(self.entries_by_number)

    @property
    def remaining(self) -> int:
        return len(self.rerun) + max(0, self.search.trials - self.asked)

    def paths(self) -> list[str]:
        data = self.sweep.base
        return sorted({data[s][k] for s, k in PATH_KEYS if isinstance(data.get(s), dict) and data[s].get(k)})

    def start(self, workers: int) -> None:
        """The sweep directory exists (and sweep.yaml): create the study if it is new."""
        if self.study is None:
            self.study = open_study(self.sweep.path, self.search, self.sweep.axes, create=True)
        if self.capacity is None:
            self.capacity = max(1, workers)

    def next(self) -> Trial | dict | None:
        """The next trial to run; a dict is the record of one that could not be made (it failed
        validation: recorded, told FAIL, never submitted); None: the study has all its trials."""
        if self.rerun:
            return self._made(self.rerun.pop(0))
        if self.asked >= self.search.trials:
            return None
        number = len(self.study.get_trials(deepcopy=False))    # the number the study gives the next trial
        self.study.sampler = make_sampler(self.search, self.sweep.axes, number)
        asked = self.study.ask(self.distributions)
        texts = override_texts(self.sweep.axes, asked.params)
        try:
            trial = make_trial(self.sweep, asked.number, texts)
            check_trials(self.sweep, [trial])
        except ConfigError as e:
            values = {k: plain(parse_value(t)) for k, t in texts.items()}
            entry = {"name": trial_name(self.sweep, asked.number, values), "index": asked.number,
                     "overrides": values, "seed": None, "replicate": 0}
            asked.set_user_attr(ATTR, entry)
            self.entries_by_number[asked.number] = entry
            record = {**entry, "status": "failed", "message": str(e)}
            self._tell(asked.number, state=self.State.FAIL)
            return record
        asked.set_user_attr(ATTR, trial.entry())
        self.entries_by_number[asked.number] = trial.entry()
        self.ids[trial.name] = asked._trial_id
        return self._made(trial)

    def _made(self, item):
        if isinstance(item, Trial):
            self.sweep.trials.append(item)
        return item

    def task(self, trial: Trial) -> dict:
        """What the worker needs to report to the pruner: where the study is, which trial."""
        if self.search.pruner is None:
            return {}
        return {"study": {"sweep_dir": str(Path(self.sweep.path).resolve()), "trial_id": self.ids[trial.name],
                          "number": trial.index}}

    def ended(self, trial: Trial, record: dict) -> None:
        self._tell_record(trial.index, record)

    def _tell_record(self, number: int, record: dict) -> None:
        status = record.get("status")
        if status == "finished":
            s = score(record)
            if s is not None and s[0] == self.search.metric and math.isfinite(s[1]):
                self._tell(number, values=s[1])
            else:   # finished without a finite value of the study's metric: nothing to learn from
                self._tell(number, state=self.State.FAIL)
        elif status == PRUNED:
            self._tell(number, state=self.State.PRUNED)
        elif status in ("failed", "diverged"):
            self._tell(number, state=self.State.FAIL)
        # interrupted, not started, cancelled: still RUNNING; --resume runs it again

    def _tell(self, number: int, **how) -> None:
        try:
            self.study.tell(number, skip_if_finished=True, **how)
        except RuntimeError as e:
            # GridSampler calls study.stop() once its grid is done, which Optuna allows only inside
            # study.optimize; the trial's state is stored before that (in a finally)
            if "Study.stop" not in str(e):
                raise

    def entries(self) -> list[dict]:
        return [self.entries_by_number[n] for n in sorted(self.entries_by_number)]


_STATUS = {"COMPLETE": "finished", "PRUNED": PRUNED, "FAIL": "failed"}

"""The validate step on real scikit-learn models: a holdout file scored by both versions,
consistency with the champion (labels and scores), and broken rows (missing, out of range)
that the candidate must handle as the champion does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.registry import open_registry
from turnout.errors import BadRequest, NotFound
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.gates import Verdict
from turnout.lifecycle.plans import ValidatePlan
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.lifecycle.sources import DataAccess
from turnout.lifecycle.validation import validate
from turnout.monitoring.query import LogReader
from turnout.registry.flavors import Prediction
from turnout.registry.service import NewVersion, Registry
from turnout.registry.signature import Signature


class Bench:
    """A registry with the model `bc` and in-process scoring, as a runner would score."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        self.data = training_csv(root)
        self.calls: list[tuple[int, int]] = []
        self._loaded: dict[int, Any] = {}

    def register(self, model: object) -> int:
        folder = self.root / f"m{len(self._loaded) + len(list(self.root.glob('m*')))}"
        folder.mkdir()
        record = self.registry.register(NewVersion(
            model="bc", source=save_joblib(model, folder), flavor="sklearn",
            training_data=self.data, target="target",
        ))  # fmt: skip
        return int(record.version)

    def predict(self, model: str, version: int, rows: Any) -> Prediction:
        record = self.registry.get_version(model, version)
        if version not in self._loaded:
            self._loaded[version] = self.registry.load(record)
        self.calls.append((version, len(rows)))
        return self._loaded[version].predict(np.asarray(rows, dtype=float))

    def validate(
        self,
        plan: dict[str, Any],
        champion: int,
        candidate: int,
        *,
        access: DataAccess | None = None,
    ) -> Verdict:
        signature: Callable[[int], Signature] = lambda v: Signature.from_dict(  # noqa: E731
            self.registry.get_version("bc", v).signature
        )
        return validate(
            ValidatePlan.model_validate(plan),
            reader=LogReader(self.root / "log"),
            deployment="d",
            model="bc",
            champion=champion,
            candidate=candidate,
            champion_signature=signature(champion),
            candidate_signature=signature(candidate),
            predict=self.predict,
            access=access,
        )


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with open_registry(tmp_path) as registry:
        yield Bench(tmp_path, registry)


def holdout(bench: Bench, **plan: Any) -> dict[str, Any]:
    return {"holdout": str(bench.data), "label_column": "target", "min_rows": 100, **plan}


def test_a_holdout_file_is_scored_by_both_versions(bench: Bench) -> None:
    champion = bench.register(sklearn_pipeline(1.0))
    weak = bench.register(sklearn_pipeline(1e-4))  # heavily regularised: worse accuracy
    verdict = bench.validate(holdout(bench, max_regression={"accuracy": 0.01}), champion, weak)
    features, target = breast_cancer()
    expected = {
        version: float(np.mean(model.predict(features) == target))
        for version, model in ((champion, sklearn_pipeline(1.0)), (weak, sklearn_pipeline(1e-4)))
    }
    assert verdict.outcome == "fail", verdict.reason
    assert "accuracy regression" in verdict.reason
    evidence = verdict.evidence
    assert evidence["source"] == str(bench.data)
    assert evidence["n"] == len(target)
    assert evidence["champion"]["accuracy"] == pytest.approx(expected[champion])
    assert evidence["candidate"]["accuracy"] == pytest.approx(expected[weak])
    assert {version for version, _ in bench.calls} == {champion, weak}


def test_a_close_candidate_passes_with_its_agreement_and_correlation(bench: Bench) -> None:
    champion = bench.register(sklearn_pipeline(1.0))
    close = bench.register(sklearn_pipeline(0.5))
    plan = holdout(bench, max_regression={"accuracy": 0.02}, min_agreement=0.95,
                   min_correlation=0.95)  # fmt: skip
    verdict = bench.validate(plan, champion, close)
    assert verdict.outcome == "pass", verdict.reason
    features, _ = breast_cancer()
    ours = sklearn_pipeline(0.5).predict_proba(features)
    theirs = sklearn_pipeline(1.0).predict_proba(features)
    expected = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
    assert verdict.evidence["correlation"] == pytest.approx(expected)
    agreement = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    assert verdict.evidence["agreement"] == pytest.approx(agreement)


def test_scores_that_do_not_follow_the_champions_fail_the_correlation_floor(
    bench: Bench,
) -> None:
    features, target = breast_cancer()
    champion = bench.register(sklearn_pipeline(1.0))
    # the same columns, but fitted to one feature's noise: unrelated scores
    rng = np.random.default_rng(0)
    noise = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        features, rng.integers(0, 2, len(target))
    )
    other = bench.register(noise)
    verdict = bench.validate(holdout(bench, min_correlation=0.9), champion, other)
    assert verdict.outcome == "fail"
    assert "score correlation with the champion" in verdict.reason
    assert verdict.evidence["correlation"] < 0.9


def test_a_candidate_that_fails_on_missing_values_the_champion_handles_fails(
    bench: Bench,
) -> None:
    features, target = breast_cancer()
    tolerant = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(features, target)
    champion = bench.register(tolerant)
    strict = bench.register(sklearn_pipeline(1.0))  # LogisticRegression refuses NaN
    verdict = bench.validate(holdout(bench), champion, strict)
    assert verdict.outcome == "fail"
    robustness = verdict.evidence["robustness"]
    assert robustness["probes"] == 3 * features.shape[1]
    assert robustness["failures"] == features.shape[1]  # every "missing" probe, no other
    assert all(f["probe"].startswith("missing ") for f in robustness["failed"])
    assert "missing mean radius" in verdict.reason
    assert "refused (400)" in verdict.reason


def test_a_candidate_that_handles_more_than_the_champion_passes(bench: Bench) -> None:
    features, target = breast_cancer()
    champion = bench.register(sklearn_pipeline(1.0))
    tolerant = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(features, target)
    candidate = bench.register(tolerant)
    verdict = bench.validate(holdout(bench), champion, candidate)
    assert verdict.outcome == "pass", verdict.reason
    assert verdict.evidence["robustness"]["failures"] == 0


def test_robustness_probes_can_be_turned_off(bench: Bench) -> None:
    features, target = breast_cancer()
    tolerant = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(features, target)
    champion = bench.register(tolerant)
    strict = bench.register(sklearn_pipeline(1.0))
    verdict = bench.validate(holdout(bench, robustness=False), champion, strict)
    assert verdict.outcome == "pass", verdict.reason
    assert "robustness" not in verdict.evidence


def test_a_holdout_without_the_label_column_fails_naming_it(bench: Bench) -> None:
    champion = bench.register(sklearn_pipeline(1.0))
    candidate = bench.register(sklearn_pipeline(0.5))
    verdict = bench.validate(holdout(bench, label_column="churned"), champion, candidate)
    assert verdict.outcome == "fail"
    assert "no label column 'churned'" in verdict.reason


def test_a_holdout_too_small_fails_instead_of_waiting(bench: Bench) -> None:
    champion = bench.register(sklearn_pipeline(1.0))
    candidate = bench.register(sklearn_pipeline(0.5))
    verdict = bench.validate(holdout(bench, min_rows=5000), champion, candidate)
    assert verdict.outcome == "fail"
    assert "5000" in verdict.reason


def test_a_rollout_with_a_missing_holdout_file_is_refused(bench: Bench) -> None:
    champion = bench.register(sklearn_pipeline(1.0))
    candidate = bench.register(sklearn_pipeline(0.5))
    routing = Routing(bench.registry.db, bench.registry, ack_timeout_s=1)
    Deployments(bench.registry.db, bench.registry).create(
        NewDeployment(name="d", model="bc", version=champion)
    )
    rollouts = Rollouts(bench.registry.db, bench.registry, routing)
    plan = {"validate": {"holdout": str(bench.root / "nope.csv")}}
    with pytest.raises(BadRequest, match=r"nope\.csv is not a file"):
        rollouts.start("d", candidate, plan, actor="alice")
    with pytest.raises(NotFound, match="has no rollout"):
        rollouts.status("d")

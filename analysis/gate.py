"""`nextbest gate --logged DIR`: a challenger becomes champion only if it earns more on logged decisions.

The challenger is the registry's @challenger versions (each model without one keeps its @champion), optionally
under another configuration (a changed catalogue cost, cap or threshold: ``challenger_settings``). Champion and
challenger decide again for the same logged decisions (``analysis/evaluation/logged.py``); the challenger wins
only if its doubly robust value beats the champion's by ``training.policy_margin`` per decision with the lower
bound of the difference's paired 95% interval above it (``analysis.ope.compare``). Both are valued with today's
catalogue. The verdict and its reason go to MLflow (a ``policy-gate`` run, and ``gate`` / ``gate_reason`` tags
on every challenger version involved, shown by ``nextbest models``); a winning challenger's versions become
@champion.
"""

from __future__ import annotations

from pathlib import Path

from nextbest.settings import Settings
from nextbest.vocabulary import CHALLENGER, CHAMPION, EFFECT_MODEL, HEADS


def summary(promoted: bool, comparison) -> str:
    """The short verdict shown by `nextbest models`."""
    return (f"{'promoted' if promoted else 'refused'}: DR {comparison.difference:+.4f} "
            f"[{comparison.low:+.4f}, {comparison.high:+.4f}] per decision")


def record(settings: Settings, comparison, changes: dict[str, tuple[str | None, str]], force: bool = False) -> dict:
    """Write the verdict: tags on each changed model's challenger version, @champion moved when it wins, and a
    ``policy-gate`` MLflow run; `changes` maps a model to its (champion version, challenger version)."""
    import mlflow
    from mlflow import MlflowClient

    from nextbest.model_contract import connect, model_name

    connect(settings)
    client = MlflowClient()
    promoted = comparison.better or force
    reason = ("forced: " if force and not comparison.better else "") + comparison.reason
    for head, (_, version) in changes.items():
        name = model_name(settings, head)
        client.set_model_version_tag(name, version, "gate", summary(promoted, comparison))
        client.set_model_version_tag(name, version, "gate_reason", reason)
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, version)
            client.set_model_version_tag(name, version, "promoted_by", "forced" if force else "policy gate")
    with mlflow.start_run(run_name="policy-gate"):
        mlflow.set_tags({"kind": "policy-gate", "verdict": "promoted" if promoted else "refused",
                         "reason": reason[:5000],
                         "challenger": ", ".join(f"{h} v{v}" for h, (_, v) in changes.items()) or "configuration"})
        mlflow.log_metrics({f"dr_{k}": float(getattr(comparison, k)) for k in
                            ("champion", "challenger", "difference", "low", "high") if
                            float(getattr(comparison, k)) == float(getattr(comparison, k))})
    return {"promoted": promoted, "reason": reason, **comparison.as_dict(),
            "changes": {h: {"champion": c, "challenger": v} for h, (c, v) in changes.items()}}


def policy_gate(settings: Settings, directory: Path | str, challenger_settings: Settings | None = None,
                force: bool = False, n_boot: int = 500, progress=None) -> dict:
    """Judge the challenger against the champion on the log of `directory` and record the verdict."""
    import dataclasses

    from analysis.evaluation.logged import open_window
    from analysis.evaluation.policies import choice_of
    from analysis.ope import compare
    from serving.policy import compile_policy
    from serving.scoring import Scorer

    from features.store import feature_names

    names = feature_names(settings)
    champion = Scorer.from_registry(settings, names, compile="no", n_jobs=2)
    challenger = Scorer.from_registry(settings, names, compile="no", n_jobs=2, aliases=(CHALLENGER, CHAMPION))
    champion_versions, challenger_versions = dict(champion.versions), dict(challenger.versions)
    changes = {h: (champion_versions.get(h), v) for h, v in challenger_versions.items()
               if h in (*HEADS, EFFECT_MODEL) and champion_versions.get(h) != v}
    other = challenger_settings or settings
    if list(other.actions) != list(settings.actions):
        raise SystemExit("the challenger configuration must keep the catalogue's actions (in the same order): the "
                         "same logged decisions are valued with today's catalogue")
    if not changes and challenger_settings is None:
        raise SystemExit("nothing to gate: every @challenger is already the @champion (train a model, or give a "
                         "challenger configuration)")
    w = open_window(settings, directory, champion, progress)
    policy = dataclasses.replace(compile_policy(other), control_share=0.0, exploration_share=0.0)
    (progress or (lambda m: None))("deciding again with the challenger")
    chal = choice_of(w.decide(challenger, policy, tag="challenger"))
    comparison = compare(w.terms(choice_of(w.champion)), w.terms(chal), settings.training.policy_margin, n_boot,
                         settings.training.seed)
    return record(settings, comparison, changes, force)

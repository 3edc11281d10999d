"""`nextbest tune --model NAME --trials N`: Optuna search with pruning.

The study lives in SQLite next to MLflow (`mlruns/optuna.db`), named
`<prefix>-<head>`, so it can be resumed (run the command again) and
inspected (optuna-dashboard or `optuna.load_study`). `nextbest train` uses
the best parameters found when a study exists.
"""

from __future__ import annotations

from rich.console import Console

from nextbest.settings import Settings

console = Console()


def storage_url(settings: Settings) -> str:
    path = settings.path(settings.paths.mlruns_dir) / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def study_name(settings: Settings, head: str) -> str:
    return f"{settings.mlflow.model_prefix}-{head}"


def best_params(settings: Settings, head: str) -> dict | None:
    """Best parameters of a stored study, or None when the head was never tuned."""
    path = settings.path(settings.paths.mlruns_dir) / "optuna.db"
    if not path.exists():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name(settings, head), storage=storage_url(settings))
        return dict(study.best_params)
    except (KeyError, ValueError):
        return None


def _space(trial) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 500, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def _pruning_callback(trial, metric_name: str):
    import optuna

    def callback(env):
        for _, name, value, _ in env.evaluation_result_list:
            if name == metric_name:
                trial.report(value, env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at iteration {env.iteration}")

    return callback


def tune(settings: Settings, head: str, trials: int, dataset=None):
    """Run `trials` more trials for one head; return the study."""
    import mlflow
    import optuna

    from nextbest.model_contract import connect
    from nextbest.vocabulary import HEAD_KIND, HEADS
    from training import models as M
    from training.datasets import SkipHead, build_dataset, load_sources

    if head not in HEADS:
        raise SystemExit(f"unknown model {head!r}; choose from {', '.join(HEADS)}")
    connect(settings)
    try:
        ds = dataset or build_dataset(settings, head, load_sources(settings))
    except SkipHead as e:
        console.print(f"[yellow]cannot tune[/yellow] {e}")
        raise SystemExit(1) from None
    metric = "binary_logloss" if HEAD_KIND[head] == "binary" else "multi_logloss"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name(settings, head), storage=storage_url(settings), load_if_exists=True,
        direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20),
        sampler=optuna.samplers.TPESampler(seed=settings.training.seed),
    )

    def objective(trial):
        params = _space(trial)
        model = M.fit(head, ds, params, settings.training.num_boost_round, settings.training.early_stopping_rounds,
                      settings.training.seed, callbacks=[_pruning_callback(trial, metric)])
        return float(model.booster.best_score["valid_0"][metric])

    with mlflow.start_run(run_name=f"tune-{head}"):
        with console.status(f"tuning {head}"):
            study.optimize(objective, n_trials=trials, show_progress_bar=False)
        mlflow.set_tag("head", head)
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric(f"best_valid_{metric}", study.best_value)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    console.print(
        f"{study.study_name}: {len(study.trials)} trials in the study ({len(done)} complete, {len(pruned)} pruned); "
        f"best valid {metric} {study.best_value:.5f} with {study.best_params}"
    )
    return study

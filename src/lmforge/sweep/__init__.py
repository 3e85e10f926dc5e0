"""Hyperparameter sweeps: Optuna studies over any config fields of a run command (`lmforge sweep`).

``config.py`` the options (SweepConfig), ``commands.py`` the commands a sweep can tune,
``space.py`` the search space, ``plan.py`` a sweep resolved for running, ``trial.py`` one trial,
``study.py`` the study and its workers, ``report.py`` the table, best config and plot,
``run.py`` the verb. Optuna and matplotlib are imported only when a sweep runs.
"""

from lmforge.sweep.commands import COMMANDS, Command
from lmforge.sweep.config import PrunerConfig, SweepConfig

__all__ = ["COMMANDS", "Command", "PrunerConfig", "SweepConfig", "run_sweep"]


def run_sweep(cfg: SweepConfig) -> dict:
    """See ``lmforge.sweep.run.run_sweep`` (imported on use: it pulls in the training code)."""
    from lmforge.sweep.run import run_sweep as run

    return run(cfg)
